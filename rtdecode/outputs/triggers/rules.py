"""Trigger rules: each scores a decoded frame and fires after `consecutive` frames past threshold,
then stays quiet for `refractory_s` seconds.

The refractory period runs on this PC's monotonic clock (time.monotonic()), never on a sender's
time: one frame stamped far in the future, or a sender clock stepping back, used to put the last
firing beyond every later frame and silence the rule for the rest of the session (issue 27, class 2).
A firing the engine suppresses (a stale frame, ...) is reported but does not start the refractory
period: the first fresh frame past threshold fires."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from rtdecode.errors import ConfigError


class Rule:
    """Base rule. Subclasses implement `score(frame (H, W) float32) -> float`.

    Fires when score >= threshold (or <= with `below=True`) on `consecutive` frames in a row and
    the last firing is at least `refractory_s` ago.
    """

    def __init__(self, name: str, threshold: float, consecutive: int = 1, refractory_s: float = 1.0,
                 below: bool = False):
        if consecutive < 1:
            raise ConfigError(f"trigger '{name}': consecutive must be >= 1, got {consecutive}")
        if refractory_s < 0:
            raise ConfigError(f"trigger '{name}': refractory_s must be >= 0, got {refractory_s}")
        self.name, self.threshold, self.consecutive = name, float(threshold), int(consecutive)
        self.refractory_s, self.below = float(refractory_s), below
        self.run = 0
        self.last_fired = -np.inf  # time.monotonic() of the last firing
        self.last_suppressed = -np.inf  # ... of the last suppressed one (they are reported as seldom)
        self.last_score = float("nan")
        self.sinks: list | None = None  # None: the engine's sinks

    def score(self, frame: np.ndarray) -> float:
        raise NotImplementedError

    def update(self, frame: np.ndarray, now: float | None = None, fire: bool = True) -> bool:
        """Score `frame`; True if the rule fires now. `now`: this PC's time.monotonic() (default: read
        it). `fire` False: the frame may not fire (the engine suppresses it): True then says the rule
        would have fired (at most once per refractory period), and the refractory period of real
        firings does not start."""
        now = time.monotonic() if now is None else now
        s = self.last_score = float(self.score(frame))
        past = s <= self.threshold if self.below else s >= self.threshold
        self.run = self.run + 1 if past else 0
        if self.run < self.consecutive:
            return False
        if not fire:  # a firing needs `consecutive` frames that may fire
            self.run = 0
            if now - self.last_suppressed >= self.refractory_s:
                self.last_suppressed = now
                return True
            return False
        if now - self.last_fired >= self.refractory_s:
            self.last_fired = now
            self.run = 0
            return True
        return False

    def reset(self) -> None:
        self.run = 0
        self.last_fired = -np.inf
        self.last_suppressed = -np.inf


def _region(region: np.ndarray | None, shape) -> np.ndarray:
    if region is None:
        return np.ones(shape, bool)
    region = np.asarray(region, bool)
    if region.shape != tuple(shape) or not region.any():
        raise ConfigError(f"trigger region must be a non-empty boolean mask of shape {tuple(shape)}, "
                          f"got {region.shape} with {int(region.sum())} pixels")
    return region


class SimilarityRule(Rule):
    """Pearson correlation of the decoded frame (in `region`) with a target image."""

    def __init__(self, name: str, target: np.ndarray, threshold: float, region: np.ndarray | None = None, **kw):
        super().__init__(name, threshold, **kw)
        self.region = _region(region, target.shape)
        t = np.asarray(target, np.float64)[self.region]
        if t.std() == 0:
            raise ConfigError(f"trigger '{name}': the target image is constant inside the region")
        self.target = (t - t.mean()) / t.std()

    def score(self, frame):
        x = frame[self.region].astype(np.float64)
        sd = x.std()
        return 0.0 if sd == 0 else float(np.mean((x - x.mean()) / sd * self.target))


class LuminanceRule(Rule):
    """Mean luminance (0-255) of the decoded frame in `region`."""

    def __init__(self, name: str, threshold: float, shape: tuple[int, int], region: np.ndarray | None = None, **kw):
        super().__init__(name, threshold, **kw)
        self.region = _region(region, shape)

    def score(self, frame):
        return float(frame[self.region].mean())


class MotionEnergyRule(Rule):
    """Mean absolute change of the decoded frame since the previous one, in `region`."""

    def __init__(self, name: str, threshold: float, shape: tuple[int, int], region: np.ndarray | None = None, **kw):
        super().__init__(name, threshold, **kw)
        self.region = _region(region, shape)
        self.prev = np.zeros(int(self.region.sum()), np.float32)
        self.have_prev = False

    def score(self, frame):
        x = frame[self.region]
        s = float(np.abs(x - self.prev).mean()) if self.have_prev else 0.0
        self.prev[:] = x
        self.have_prev = True
        return s

    def reset(self):
        super().reset()
        self.have_prev = False


class CallableRule(Rule):
    """A user-supplied Python callable frame -> float (compared with threshold) or bool."""

    def __init__(self, name: str, fn: Callable[[np.ndarray], float | bool], threshold: float = 0.5, **kw):
        if not callable(fn):
            raise ConfigError(f"trigger '{name}': {fn!r} is not callable")
        super().__init__(name, threshold, **kw)
        self.fn = fn

    def score(self, frame):
        return float(self.fn(frame))
