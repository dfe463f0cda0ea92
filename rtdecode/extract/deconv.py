"""Online AR(1) deconvolution: calcium-like traces -> non-negative activity.

Two methods, both per ROI, both in the units of the input (dF/F):

- "threshold" (zero delay): the innovation d_t = y_t - gamma * y_(t-1), kept where it exceeds
  k_sigma noise std's. Cheapest; activity of frame t is known at frame t.
- "oasis" (fixed lag): OASIS for AR(1) (Friedrich, Zhou & Paninski 2017) with the minimum spike
  size s_min = k_sigma * sigma (their thresholded, L0-like variant) run online: each frame adds one
  pool and merges backwards while the spike it implies is below s_min. The activity of frame
  t - lag is read from the pools at frame t, so the output lags the input by `lag` frames
  (lag / fps seconds); the pools at most lag + 3 back are kept (older ones are final for the
  output). More accurate than "threshold" on the Cascade ground truth (benchmarks/README.md).

The noise std sigma is either fixed or tracked online from |d| (see `Deconvolve`).
"""

from __future__ import annotations

import logging
import math

from typing import Literal

import numpy as np
from pydantic import Field

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k
from rtdecode.stage import Spec, Stage, StageOptions

log = logging.getLogger(__name__)

_MAD_TO_STD = 1 / 0.6745  # std of a Gaussian from the median of its absolute value
_MEAN_TO_MAD = 0.6745 * math.sqrt(math.pi / 2)  # median |x| from mean |x| of a Gaussian (0.8453)
_NOISE_FLOOR = 1e-6  # keeps the multiplicative noise tracker able to grow again
METHODS = ("threshold", "oasis")


def gamma_of(tau_s: float, fps: float) -> float:
    """AR(1) decay per frame of an exponential with time constant tau_s at fps."""
    return math.exp(-1 / (fps * tau_s))


def decay_table(gamma: float) -> np.ndarray:
    """float64 gamma ** k for k = 0 .. K - 1, where gamma ** (K - 1) < 1e-12 (or K = 2**20); the
    OASIS kernels read gamma ** min(k, K - 1) from it."""
    K = 2**20 if gamma >= 1 else int(min(2**20, math.ceil(math.log(1e-12) / math.log(gamma)) + 2))
    return gamma ** np.arange(max(K, 2), dtype=np.float64)


def estimate_noise(y: np.ndarray, fps: float = 30.0, tau_s: float = 0.7) -> np.ndarray:
    """(n, T) traces (e.g. dF/F of a calibration block) -> (n,) float32 robust std of the
    innovation y_t - gamma * y_(t-1), for `Deconvolve(noise=...)`."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 2 or y.shape[1] < 3:
        raise StageError(f"estimate_noise: expected (n, T) traces with T >= 3, got shape {y.shape}")
    d = y[:, 1:] - gamma_of(tau_s, fps) * y[:, :-1]
    return np.maximum(np.median(np.abs(d), axis=1) * _MAD_TO_STD, _NOISE_FLOOR).astype(np.float32)


class Deconvolve(Stage):
    """float32 (n,) trace -> float32 (n,) activity, always >= 0; gamma = exp(-1 / (fps * tau_s)).

    method "threshold" (default): s_t = d_t if d_t > k_sigma * sigma else 0, d_t = y_t - gamma *
    y_(t-1); no delay. method "oasis": online OASIS AR(1) with minimum spike size k_sigma * sigma;
    the output of frame t is the activity of frame t - `lag` (delay lag / fps s; 0 for the first
    `lag` frames). See the module docstring.

    sigma (per ROI, the noise std of d, in the units of y) is either fixed (`noise`, e.g. from
    `estimate_noise` on a calibration block) or tracked online: during the first `warmup` frames
    the running mean of |d| (converted to a median for Gaussian noise: O(1) per frame), then a
    running median (multiplicative steps of 1 / k after k frames, but at least 1 / (fps *
    noise_tau_s)), scaled by 1 / 0.6745.

    Non-finite input of a ROI is rejected and counted in `rejected`: "threshold" gives activity 0
    and keeps its previous y; "oasis" treats the frame as unobserved (the current pool extends
    over it).
    backend: "numba" (default) or "numpy" (the reference). No allocation per frame with "numba".

    history = 1 ("threshold": the first frame after reset gives 0) or lag + 3 ("oasis": pools).
    """

    name = "deconv"
    history = 1

    class Options(StageOptions):
        method: Literal["threshold", "oasis"] = Field(
            "threshold", description="'threshold': no delay; 'oasis': online OASIS, more accurate, activity `lag` "
                                     "frames late")
        lag: int = Field(3, ge=0, le=100, description="oasis: frames of delay (ignored by threshold)")
        tau_s: float = Field(0.7, gt=0.0, le=10.0, description="the indicator's decay time, s (GCaMP6s ~0.7)")
        k_sigma: float = Field(2.0, ge=0.0, le=50.0, description="the detection level, x each ROI's noise")
        noise_tau_s: float = Field(30.0, gt=0.0, le=3600.0, description="the noise tracker's time constant, s")
        warmup: int = Field(30, ge=1, le=100000, description="frames of running-mean noise before the running median")

    @classmethod
    def from_options(cls, ctx, in_spec, opts: "Deconvolve.Options") -> "Deconvolve":
        """Activity of each of the in_spec's (n,) traces."""
        return cls(in_spec.shape[0], fps=ctx.fps, tau_s=opts.tau_s, k_sigma=opts.k_sigma,
                   noise_tau_s=opts.noise_tau_s, warmup=opts.warmup, method=opts.method, lag=opts.lag,
                   backend="numba" if ctx.fast else "numpy")

    def __init__(self, n: int, fps: float = 30.0, tau_s: float = 0.7, k_sigma: float = 2.0,
                 noise: np.ndarray | None = None, noise_tau_s: float = 30.0, warmup: int = 30,
                 method: str = "threshold", lag: int = 3, backend: str = "numba"):
        if backend not in ("numba", "numpy"):
            raise ConfigError(f"deconv: backend must be 'numba' or 'numpy', got {backend!r}")
        if method not in METHODS:
            raise ConfigError(f"deconv: method must be one of {METHODS}, got {method!r}")
        self.backend = backend
        self.method = method
        if n < 1:
            raise ConfigError(f"deconv: n must be >= 1, got {n}")
        if not (fps > 0 and tau_s > 0 and noise_tau_s > 0 and k_sigma >= 0 and warmup >= 1):
            raise ConfigError(
                "deconv: need fps, tau_s, noise_tau_s > 0, k_sigma >= 0, warmup >= 1; got "
                f"fps={fps}, tau_s={tau_s}, noise_tau_s={noise_tau_s}, k_sigma={k_sigma}, warmup={warmup}"
            )
        if int(lag) != lag or lag < 0:
            raise ConfigError(f"deconv: lag must be a whole number of frames >= 0, got {lag}")
        self.in_spec = Spec(np.float32, (n,))
        self.out_spec = Spec(np.float32, (n,))
        self.fps = float(fps)
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
        self._k32 = np.float32(self.k_sigma)
        self.lag = int(lag) if method == "oasis" else 0
        if method == "oasis":
            self.history = self.lag + 3
            P = self.lag + 3  # the pool holding frame t - lag and the one before it are always kept
            self._gpow = decay_table(gamma_of(tau_s, fps))
            self._v = np.zeros((n, P))  # pool value (calcium at the pool's first frame)
            self._w = np.zeros((n, P))  # pool weight
            self._len = np.zeros((n, P), np.int64)  # pool length, frames
            self._start = np.zeros((n, P), np.int64)  # pool's first frame
            self._top = np.zeros(n, np.int64)  # ring index of the newest pool
            self._m = np.zeros(n, np.int64)  # pools held
        self.t = 0
        self.rejected = 0
        self.reset()

    @property
    def delay_s(self) -> float:
        """How late the activity of a frame comes out, seconds (lag / fps)."""
        return self.lag / self.fps

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
            if self.method == "oasis":
                self._oasis(inp, out)
            else:
                out.fill(0)
            self.t = 1
            return
        if self.backend == "numba":
            self._process_numba(inp, out)
            return
        d = self._d
        bad = None
        x = inp
        if not np.isfinite(inp).all():
            bad = ~np.isfinite(inp)
            self._reject_log(int(bad.sum()))
            x = np.where(bad, self._prev, inp)
        np.multiply(self._prev, -self.gamma, out=d)
        d += x
        if bad is not None:
            d[bad] = 0
        np.copyto(self._prev, x)
        if self._fixed is None:
            self._track_noise(d)
        if self.method == "oasis":
            self._oasis(inp, out)
        else:
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
                _k.noise_warm(d, self._mad, np.float32(k), np.float32(_MEAN_TO_MAD))
            else:
                eta = max(self.eta, 1.0 / (k + 1))
                _k.noise_track(d, self._mad, np.float32(1 + eta), np.float32(1 - eta))
            _k.noise_finish(self._mad, np.float32(_NOISE_FLOOR), np.float32(_MAD_TO_STD), self.sigma)
        if self.method == "oasis":
            self._oasis(inp, out)
        else:
            _k.threshold_activity(d, self.sigma, self._k32, out)
        self.t += 1

    def _oasis(self, inp: np.ndarray, out: np.ndarray) -> None:
        """One OASIS frame (t = self.t) on the raw input; writes the activity of frame t - lag."""
        if self.backend == "numba":
            _k.oasis_step(inp, self.t, self.lag, self.k_sigma, self.sigma, self._gpow, self._v,
                          self._w, self._len, self._start, self._top, self._m, out)
            return
        # NumPy reference: the same arithmetic, vectorised over ROIs (allocates; reference only).
        v, w, ln, st, top, m, gp = self._v, self._w, self._len, self._start, self._top, self._m, self._gpow
        P, K, t = v.shape[1], gp.shape[0], self.t
        r = np.arange(v.shape[0])
        y = inp.astype(np.float64)
        fin = np.isfinite(y)
        ext = ~fin & (m > 0)  # unobserved frame: the newest pool extends over it
        ln[r[ext], top[ext]] += 1
        pi = r[fin | (m == 0)]
        m[pi[m[pi] == P]] -= 1  # full: forget the oldest pool
        top[pi] = (top[pi] + 1) % P
        v[pi, top[pi]] = np.where(fin[pi], y[pi], 0.0)
        w[pi, top[pi]] = np.where(fin[pi], 1.0, 0.0)
        ln[pi, top[pi]] = 1
        st[pi, top[pi]] = t
        m[pi] += 1
        smin = self.k_sigma * self.sigma.astype(np.float64)
        while True:  # merge while the newest pool implies a spike below s_min
            j = (top - 1) % P
            f = gp[np.minimum(ln[r, j], K - 1)]
            idx = r[(m > 1) & (v[r, j] * f + smin > v[r, top])]
            if idx.size == 0:
                break
            jj, tt, ff = j[idx], top[idx], f[idx]
            z = w[idx, jj] + w[idx, tt] * ff * ff
            v[idx, jj] = (v[idx, jj] * w[idx, jj] + v[idx, tt] * w[idx, tt] * ff) / z
            w[idx, jj] = z
            ln[idx, jj] += ln[idx, tt]
            top[idx] = jj
            m[idx] -= 1
        out.fill(0)
        u = t - self.lag
        if u < 0:
            return
        k = top.copy()  # find the pool holding frame u: at most lag pools below the newest
        q = np.zeros_like(k)
        for _ in range(self.lag):
            move = st[r, k] > u
            k[move] = (k[move] - 1) % P
            q[move] += 1
        j = (k - 1) % P
        spike = (st[r, k] == u) & (q + 1 < m)
        s = np.maximum(v[r, k], 0.0) - np.maximum(v[r, j], 0.0) * gp[np.minimum(ln[r, j], K - 1)]
        np.copyto(out, np.maximum(s, 0.0), where=spike, casting="same_kind")

    def _track_noise(self, d: np.ndarray) -> None:
        absd = self._absd
        np.abs(d, out=absd)
        k = self.t - 1  # innovations seen before this one
        if k < self.warmup:
            # Warm-up: running mean of |d|, as a median of |d| for Gaussian noise (O(1) per frame).
            self._mad *= np.float32(k)
            absd *= np.float32(_MEAN_TO_MAD)
            self._mad += absd
            self._mad /= np.float32(k + 1)
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
        if self.method == "oasis":
            for a in (self._v, self._w, self._len, self._start, self._top, self._m):
                a[...] = 0
