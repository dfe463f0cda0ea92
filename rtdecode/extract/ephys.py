"""The ephys extraction's parts: the band-pass design, threshold crossings, binning, and the oracle.

The extraction itself is the stages of `ephys_stages.py` (band-pass -> common reference ->
threshold crossings -> binned counts), live and offline; the filter state, the last sample, each
channel's last event and the noise window carry across blocks, so chunked processing equals
processing the whole signal at once. `ThresholdCrossings` is the Detect stage's state;
`reference_detect` (scipy.signal.sosfilt over the whole signal) is the NumPy/SciPy oracle the
tests and `rtdecode bench extract` hold the stages to.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import signal

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k

log = logging.getLogger(__name__)

_MAD_TO_STD = 1 / 0.6745


def bandpass_sos(fs: float, band=(300.0, 6000.0), order: int = 3) -> np.ndarray:
    """Butterworth band-pass as second-order sections (float64 (S, 6))."""
    lo, hi = float(band[0]), float(band[1])
    if not (0 < lo < hi < fs / 2):
        raise ConfigError(f"ephys: band must satisfy 0 < low < high < fs/2 = {fs / 2}, got {band}")
    return signal.butter(order, [lo, hi], btype="bandpass", fs=fs, output="sos")


def robust_noise(x: np.ndarray) -> np.ndarray:
    """(T, C) filtered signal -> (C,) float32 noise std, median(|x|) / 0.6745 (Quiroga 2004)."""
    return (np.median(np.abs(x), axis=0) * _MAD_TO_STD).astype(np.float32)


class ThresholdCrossings:
    """Negative threshold crossings with a refractory period, streaming over (T, C) float32 chunks.

    The state of the detection step of the `Detect` stage
    (ephys_stages.py). thr = k x each channel's robust noise, estimated from exactly the first
    `noise_s` seconds (no events before then: the same samples whatever the chunks, as
    `reference_detect`); or `noise` x k if given; or |threshold_uv|. refractory_ms: minimum time
    between two events of one channel. t0: sample number of the first sample.
    """

    def __init__(self, n_channels: int, fs: float, *, k: float = 4.5, threshold_uv: float | None = None,
                 noise: np.ndarray | None = None, noise_s: float = 1.0, refractory_ms: float = 1.0, t0: int = 0):
        if refractory_ms < 0 or k <= 0:
            raise ConfigError("ephys: need refractory_ms >= 0 and k > 0")
        self.C = int(n_channels)
        self.k = float(k)
        self.threshold_uv = threshold_uv
        self.refractory = int(round(refractory_ms * 1e-3 * fs))
        self._noise_n = max(1, int(round(noise_s * fs)))
        self._fixed_noise = None if noise is None else np.asarray(noise, np.float32)
        if self._fixed_noise is not None and self._fixed_noise.shape != (self.C,):
            raise ConfigError(f"ephys: noise must have shape ({self.C},)")
        self._t0 = int(t0)
        self._inf = np.full(self.C, np.inf, np.float32)
        self.reset()

    def reset(self) -> None:
        self.t = self._t0
        self.prev = np.zeros(self.C, np.float32)
        self.last = np.full(self.C, -(2**62), np.int64)
        self._calib = [] if self._fixed_noise is None and self.threshold_uv is None else None
        self._calib_n = 0
        if self.threshold_uv is not None:
            self.thr = np.full(self.C, abs(float(self.threshold_uv)), np.float32)
        elif self._fixed_noise is not None:
            self.thr = (self._fixed_noise * self.k).astype(np.float32)
        else:
            self.thr = self._inf.copy()  # no events until the noise is known

    @property
    def calibrated(self) -> bool:
        """True once the thresholds are known (fixed, absolute, or the noise estimate is done)."""
        return self._calib is None

    def skip(self, n_samples: int) -> None:
        if n_samples < 0:
            raise StageError(f"ephys: cannot skip a negative number of samples ({n_samples})")
        self.t += int(n_samples)

    def restart(self, t0: int) -> None:
        """New sample numbers from `t0`: clear the refractory memory; keep the thresholds learnt."""
        thr, calib, calib_n = self.thr, self._calib, self._calib_n
        self._t0 = int(t0)
        self.reset()
        if calib is None:  # the noise was known: keep it rather than go blind for noise_s again
            self.thr, self._calib, self._calib_n = thr, None, calib_n

    def detect(self, y: np.ndarray, out_t: np.ndarray, out_c: np.ndarray) -> int:
        """(T, C) float32 -> events written to out_t / out_c (sample numbers, channels); returns how
        many (at most their length). Advances the sample clock by T."""
        T = y.shape[0]
        n = 0
        if self._calib is not None and T:  # still learning the noise: keep exactly the first noise_n samples
            need = self._noise_n - self._calib_n
            head = y[:need]
            self._calib.append(head.copy())
            self._calib_n += head.shape[0]
            # the learning samples give no event but are the "previous sample" of the next one
            _k.detect_crossings(head, self._inf, self.prev, self.last, self.refractory, self.t, out_t, out_c)
            self.t += head.shape[0]
            y = y[need:]
            if self._calib_n >= self._noise_n:
                noise = robust_noise(np.concatenate(self._calib))
                self.thr = (noise * self.k).astype(np.float32)
                self._calib = None
                log.info("ephys: noise estimated from %d samples; median %.3g", self._calib_n,
                         float(np.median(noise)))
        if y.shape[0]:
            n = _k.detect_crossings(y, self.thr, self.prev, self.last, self.refractory, self.t, out_t, out_c)
            self.t += y.shape[0]
        return n


def bin_counts(ev_t: np.ndarray, ev_c: np.ndarray, edges: np.ndarray, counts: np.ndarray) -> None:
    """Add events (sample numbers, channels) into counts[b, c] for edges[b] <= t < edges[b+1]."""
    edges = np.asarray(edges, np.int64)
    if counts.shape[0] != edges.shape[0] - 1:
        raise StageError(f"ephys: counts has {counts.shape[0]} bins but edges give {edges.shape[0] - 1}")
    _k.bin_events(ev_t, ev_c, ev_t.shape[0], edges, counts)


def reference_detect(x: np.ndarray, fs: float, *, band=(300.0, 6000.0), order: int = 3,
                     reference="mean", k: float = 4.5, threshold_uv=None, noise=None,
                     noise_s: float = 1.0, refractory_ms: float = 1.0, scale: float = 1.0, t0: int = 0):
    """NumPy/SciPy reference of the whole chain over a whole (T, C) signal: (times, channels)."""
    y = x.astype(np.float64) * scale
    if band is not None:
        y = signal.sosfilt(bandpass_sos(fs, band, order), y, axis=0)
    y = y.astype(np.float32)
    if reference == "mean":
        y = y - y.mean(axis=1, keepdims=True, dtype=np.float64).astype(np.float32)
    elif reference == "median":
        y = y - np.median(y, axis=1, keepdims=True)
    C = y.shape[1]
    n_cal = 0
    if threshold_uv is not None:
        thr = np.full(C, abs(threshold_uv), np.float32)
    elif noise is not None:
        thr = np.asarray(noise, np.float32) * np.float32(k)
    else:
        n_cal = int(round(noise_s * fs))
        thr = robust_noise(y[:n_cal]) * np.float32(k)
    refr = int(round(refractory_ms * 1e-3 * fs))
    below = y < -thr
    cross = below.copy()
    cross[1:] &= ~below[:-1]
    cross[0] &= ~(0 < -thr)
    ts, cs = [], []
    for c in range(C):
        last = -(2**62)
        for t in np.flatnonzero(cross[:, c]):
            if t < n_cal:
                continue
            if t - last >= refr:
                ts.append(t + t0)
                cs.append(c)
                last = t
    order_ = np.lexsort((np.array(cs, np.int64), np.array(ts, np.int64)))
    return np.array(ts, np.int64)[order_], np.array(cs, np.int64)[order_]

