"""Online AR(1) deconvolution: calcium-like traces -> non-negative activity."""

from __future__ import annotations

import logging
import math

import numpy as np

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k
from rtdecode.stage import Spec, Stage

log = logging.getLogger(__name__)

_MAD_TO_STD = 1 / 0.6745  # std of a Gaussian from the median of its absolute value
_NOISE_FLOOR = 1e-6  # keeps the multiplicative noise tracker able to grow again


def gamma_of(tau_s: float, fps: float) -> float:
    """AR(1) decay per frame of an exponential with time constant tau_s at fps."""
    return math.exp(-1 / (fps * tau_s))


def estimate_noise(y: np.ndarray, fps: float = 30.0, tau_s: float = 0.7) -> np.ndarray:
    """(n, T) traces (e.g. dF/F of a calibration block) -> (n,) float32 robust std of the
    innovation y_t - gamma * y_(t-1), for `Deconvolve(noise=...)`."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] < 3:
        raise StageError(f"estimate_noise: expected (n, T) traces with T >= 3, got shape {y.shape}")
    d = y[:, 1:] - gamma_of(tau_s, fps) * y[:, :-1]
    return np.maximum(np.median(np.abs(d), axis=1) * _MAD_TO_STD, _NOISE_FLOOR).astype(np.float32)


class Deconvolve(Stage):
    """float32 (n,) trace -> float32 (n,) activity s_t = d_t if d_t > k_sigma * sigma else 0, where
    d_t = y_t - gamma * y_(t-1) and gamma = exp(-1 / (fps * tau_s)); always >= 0.

    sigma (per ROI, in the units of y) is either fixed (`noise`, e.g. from `estimate_noise` on a
    calibration block) or tracked online: the median of |d| over the first `warmup` frames, then a
    running median (multiplicative steps of 1 / k after k frames, but at least 1 / (fps *
    noise_tau_s)), scaled by 1 / 0.6745.

    Non-finite input of a ROI is rejected: activity 0, its previous y kept, counted in `rejected`.
    backend: "numba" (default) or "numpy" (the reference).

    history = 1: keeps y of the previous frame; the first frame after reset gives 0.
    """

    name = "deconv"
    history = 1

    def __init__(self, n: int, fps: float = 30.0, tau_s: float = 0.7, k_sigma: float = 2.0,
                 noise: np.ndarray | None = None, noise_tau_s: float = 30.0, warmup: int = 30,
                 backend: str = "numba"):
        if backend not in ("numba", "numpy"):
            raise ConfigError(f"deconv: backend must be 'numba' or 'numpy', got {backend!r}")
        self.backend = backend
        if n < 1:
            raise ConfigError(f"deconv: n must be >= 1, got {n}")
        if not (fps > 0 and tau_s > 0 and noise_tau_s > 0 and k_sigma >= 0 and warmup >= 1):
            raise ConfigError(
                "deconv: need fps, tau_s, noise_tau_s > 0, k_sigma >= 0, warmup >= 1; got "
                f"fps={fps}, tau_s={tau_s}, noise_tau_s={noise_tau_s}, k_sigma={k_sigma}, warmup={warmup}"
            )
        self.in_spec = Spec(np.float32, (n,))
        self.out_spec = Spec(np.float32, (n,))
        self.gamma = np.float32(gamma_of(tau_s, fps))
        self.k_sigma = float(k_sigma)
        self.eta = 1 / (fps * noise_tau_s)
        self.warmup = int(warmup)
        if noise is not None:
            sd = np.asarray(noise, dtype=np.float32)
            if sd.shape != (n,) or not np.all(np.isfinite(sd)) or np.any(sd < 0):
                raise StageError(f"deconv: noise must be ({n},) finite and >= 0, got shape {sd.shape}")
            self._fixed = sd.copy()
        else:
            self._fixed = None
        self.sigma = np.zeros(n, np.float32)  # current noise std of d, per ROI
        self._mad = np.zeros(n, np.float32)
        self._prev = np.zeros(n, np.float32)
        self._d = np.empty(n, np.float32)
        self._absd = np.empty(n, np.float32)
        self._thr = np.empty(n, np.float32)
        self._above = np.empty(n, bool)
        self._factor = np.empty(n, np.float32)
        self._warm = np.empty((self.warmup, n), np.float32)
        self._scratch = np.empty(self.warmup, np.float32)
        self._k32 = np.float32(self.k_sigma)
        self.t = 0
        self.rejected = 0
        self.reset()

    def _reject_log(self, k: int) -> None:
        if k and self.rejected == 0:
            log.warning("deconv: %d ROI(s) gave NaN/inf input; rejected (activity 0), counted in "
                        "Deconvolve.rejected", k)
        self.rejected += k

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        if self.t == 0:
            np.copyto(self._prev, inp)
            bad = ~np.isfinite(self._prev)
            if bad.any():
                self._reject_log(int(bad.sum()))
                self._prev[bad] = 0
            out.fill(0)
            self.t = 1
            return
        if self.backend == "numba":
            self._process_numba(inp, out)
            return
        d = self._d
        bad = None
        if not np.isfinite(inp).all():
            bad = ~np.isfinite(inp)
            self._reject_log(int(bad.sum()))
            inp = np.where(bad, self._prev, inp)
        np.multiply(self._prev, -self.gamma, out=d)
        d += inp
        if bad is not None:
            d[bad] = 0
        np.copyto(self._prev, inp)
        if self._fixed is None:
            self._track_noise(d)
        np.multiply(self.sigma, self.k_sigma, out=self._thr)
        np.greater(d, self._thr, out=self._above)
        out.fill(0)
        np.copyto(out, d, where=self._above)
        np.maximum(out, 0, out=out)  # k_sigma = 0 and sigma = 0 would let d = 0 through; keep >= 0
        self.t += 1

    def _process_numba(self, inp: np.ndarray, out: np.ndarray) -> None:
        d = self._d
        rej = _k.ar1_innovation(inp, self._prev, self.gamma, d)
        if rej:
            self._reject_log(rej)
        if self._fixed is None:
            k = self.t - 1
            if k < self.warmup:
                _k.noise_warm(d, self._warm, k, self._scratch, self._mad)
            else:
                eta = max(self.eta, 1.0 / (k + 1))
                _k.noise_track(d, self._mad, np.float32(1 + eta), np.float32(1 - eta))
            _k.noise_finish(self._mad, np.float32(_NOISE_FLOOR), np.float32(_MAD_TO_STD), self.sigma)
        _k.threshold_activity(d, self.sigma, self._k32, out)
        self.t += 1

    def _track_noise(self, d: np.ndarray) -> None:
        absd = self._absd
        np.abs(d, out=absd)
        k = self.t - 1  # innovations seen before this one
        if k < self.warmup:
            self._warm[k] = absd
            # Only during warm-up: the exact median of the few innovations so far.
            self._mad[:] = np.median(self._warm[: k + 1], axis=0)
        else:
            # Running median: step up when |d| is above it, down when below; equal rates settle
            # where half the |d| lie on each side. Multiplicative, so it is scale-free. The step
            # shrinks as 1/k (converges like a median of all frames so far) down to `eta`
            # (then forgets on the noise_tau_s scale).
            eta = max(self.eta, 1.0 / (k + 1))
            np.greater(absd, self._mad, out=self._above)
            self._factor.fill(1 - eta)
            np.copyto(self._factor, 1 + eta, where=self._above)
            self._mad *= self._factor
        np.maximum(self._mad, _NOISE_FLOOR, out=self._mad)
        np.multiply(self._mad, _MAD_TO_STD, out=self.sigma)

    def reset(self) -> None:
        self.t = 0
        self.rejected = 0
        self._prev[:] = 0
        self._mad[:] = 0
        if self._fixed is not None:
            np.copyto(self.sigma, self._fixed)
        else:
            self.sigma[:] = 0
