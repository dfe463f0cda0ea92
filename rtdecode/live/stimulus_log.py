"""Which stimulus frame was on screen when, for matching decoded frames to their targets."""

from __future__ import annotations

import bisect
from collections import deque

import numpy as np


class StimulusLog:
    """Which stimulus frame was on screen when: the last `keep` stim messages, searchable by time.

    The images sent with them are kept for the ids kept, at most `max_image_bytes` in all (the
    oldest images are let go first; their ids stay)."""

    def __init__(self, keep: int = 1000, max_image_bytes: int = 64 * 2**20):
        self.times: deque[float] = deque(maxlen=keep)
        self.ids: deque[tuple[int, int]] = deque(maxlen=keep)
        self.images: dict[tuple[int, int], np.ndarray] = {}  # the images of the ids kept, when sent
        self.max_image_bytes = max_image_bytes
        self.image_bytes = 0
        self.images_dropped = 0

    def _drop_image(self, key) -> None:
        img = self.images.pop(key, None)
        if img is not None:
            self.image_bytes -= img.nbytes

    def add(self, t: float, trial: int, frame: int, image: np.ndarray | None = None) -> None:
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # keep the times sorted (bisect): a flip time that goes back is clamped
        if len(self.ids) == self.ids.maxlen:
            self._drop_image(self.ids[0])
        self.times.append(t)
        self.ids.append((trial, frame))
        if image is not None and image.ndim == 2 and image.nbytes <= self.max_image_bytes:
            self._drop_image((trial, frame))
            self.images[(trial, frame)] = image
            self.image_bytes += image.nbytes
            while self.image_bytes > self.max_image_bytes:  # dicts keep insertion order: oldest first
                self._drop_image(next(iter(self.images)))
                self.images_dropped += 1

    def find(self, t: float, tolerance: float = 1e-3) -> int | None:
        """Index of the stim shown at time t (the latest at or before t), or None."""
        i = bisect.bisect_right(self.times, t + tolerance) - 1
        return i if i >= 0 else None

    def at(self, t: float, tolerance: float = 1e-3) -> tuple[int, int] | None:
        """(trial, frame) shown at time t: the latest stim message sent at or before t."""
        i = self.find(t, tolerance)
        return None if i is None else self.ids[i]
