"""Rigid motion correction by phase correlation against a reference image.

Shift convention (shared with `rtdecode.rig.twophoton`): a frame whose content moved by (dy, dx)
relative to the reference, frame[y, x] = reference[y - dy, x - dx], is reported as
`last_shift = (dy, dx)` and corrected by shifting it back by the rounded (-dy, -dx).
"""

from __future__ import annotations

import logging

from typing import Optional

import numpy as np
from pydantic import Field
from scipy import fft as _fft

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k
from rtdecode.stage import Spec, Stage, StageOptions

BACKENDS = ("numba", "numpy")

# The estimate's defaults: a centred 320x320 region binned 2x2 (a 160x160 FFT). On the virtual rig
# (512x512, 3 px motion) it is both faster and closer to the true motion than the earlier 256x256
# at full resolution (benchmarks/results/register_grid.json, `python benchmarks/register_grid.py`):
# the correlation peak is smoothed by ~1 px anyway, so full resolution adds cost, not precision,
# while a larger region adds cells. Regions under 320 px (small frames) keep full resolution.
DEFAULT_CROP = (320, 320)
AUTO_BIN_FROM = 320

log = logging.getLogger(__name__)

_EPS = 1e-5  # keeps spectral whitening finite on empty frequencies


class Register(Stage):
    """uint16 or int16 (ScanImage's raw type; `dtype`) (H, W) raw frame -> float32 (H, W) frame aligned to `reference` (integer shift).

    reference: (H, W) image the frames are aligned to (e.g. `reference_from(calibration frames)`
        or suite2p's ops['meanImg']).
    crop: (h, w) centred region used for the estimate, clipped to the frame; None: DEFAULT_CROP.
    downsample: the region is binned downsample x downsample before the FFT; None (default): 2
        where the clipped region is at least AUTO_BIN_FROM px on its shorter side, else 1.
    max_shift: largest |shift| searched, px of the frame; default a quarter of the crop.
    smooth_sigma: Gaussian smoothing of the correlation map, px of the binned grid (as suite2p's
        default at full resolution).

    After each frame: `last_shift` (dy, dx) float64 px with parabolic sub-pixel refinement,
    `last_peak` the phase-correlation peak height (drops towards 0 when registration fails).
    The exposed border after shifting repeats the nearest valid row / column.
    backend: "numba" (default; scipy.fft with Numba kernels for whitening and peak search; the
        only per-frame allocations are the FFT outputs) or "numpy" (the NumPy reference: np.fft and array expressions).
    """

    name = "register"

    class Options(StageOptions):
        crop: Optional[tuple[int, int]] = Field(
            None, description="the centred region used for motion estimation, px (height, width), each in "
                              "[8, 4096]; default 320 x 320, clipped to the frame")
        downsample: Optional[int] = Field(
            None, ge=1, le=8, description="the region is binned downsample x downsample before the FFT; default 2 "
                                          "where it is at least 320 px on its shorter side, else 1")
        max_shift: Optional[int] = Field(None, ge=1, le=1024,
                                         description="the largest motion searched, px (default: a quarter of the crop)")
        smooth_sigma: float = Field(1.15, ge=0.0, le=10.0,
                                    description="Gaussian smoothing of the cross-power spectrum, px")

    @classmethod
    def from_options(cls, ctx, in_spec, opts: "Register.Options") -> "Register":
        """The chain's first stage: registers ctx.frame_dtype frames to ctx.reference."""
        return cls(ctx.reference, crop=opts.crop, max_shift=opts.max_shift, smooth_sigma=opts.smooth_sigma,
                   downsample=opts.downsample, backend="numba" if ctx.fast else "numpy", dtype=ctx.frame_dtype)

    def taps(self, out):
        """'shifts': the last frame's (dy, dx), px."""
        return {"shifts": (lambda: self.last_shift, (2,), "float32")}
    history = 0

    def __init__(self, reference: np.ndarray, crop: tuple[int, int] | None = None,
                 max_shift: int | None = None, smooth_sigma: float = 1.15, backend: str = "numba",
                 dtype=np.uint16, downsample: int | None = None):
        if np.dtype(dtype) not in (np.dtype(np.uint16), np.dtype(np.int16)):
            raise ConfigError(f"register: frame dtype must be uint16 or int16 (ScanImage), got {np.dtype(dtype)}")
        if backend not in BACKENDS:
            raise ConfigError(f"register: backend must be one of {BACKENDS}, got {backend!r}")
        self.backend = backend
        ref = np.asarray(reference, dtype=np.float32)
        if ref.ndim != 2 or min(ref.shape) < 8:
            raise StageError(
                f"register: reference must be a 2-D image of at least 8x8, got shape {ref.shape}"
            )
        if not np.all(np.isfinite(ref)):
            raise StageError("register: reference has NaN or inf pixels; rebuild it from valid frames")
        self.reference = ref  # (H, W) float32, the image frames are registered to (recorded with a session)
        H, W = ref.shape
        crop = DEFAULT_CROP if crop is None else crop
        ch, cw = min(int(crop[0]), H), min(int(crop[1]), W)
        if ch < 8 or cw < 8:
            raise ConfigError(f"register: crop must be at least 8x8, got {crop}")
        b = (2 if min(ch, cw) >= AUTO_BIN_FROM else 1) if downsample is None else int(downsample)
        if not 1 <= b <= 8 or min(ch, cw) // b < 8:
            raise ConfigError(f"register: downsample must be in 1..8 and leave at least 8x8 of the {ch}x{cw} "
                              f"crop, got {downsample}")
        ch, cw = ch // b * b, cw // b * b
        gh, gw = ch // b, cw // b  # the estimate's grid
        m = min(ch, cw) // 4 if max_shift is None else int(max_shift)
        mg = -(-m // b)  # in grid px, rounded up
        if not 0 < m or not mg < min(gh, gw) // 2:
            raise ConfigError(
                f"register: max_shift must be in 1..{(min(gh, gw) // 2 - 1) * b} for a {ch}x{cw} crop "
                f"binned {b}x{b}, got {m}"
            )
        if smooth_sigma < 0:
            raise ConfigError(f"register: smooth_sigma must be >= 0, got {smooth_sigma}")

        self.in_spec = Spec(dtype, (H, W))
        self.out_spec = Spec(np.float32, (H, W))
        self.max_shift = mg  # grid px
        self.downsample = b
        self._win = (slice((H - ch) // 2, (H - ch) // 2 + ch), slice((W - cw) // 2, (W - cw) // 2 + cw))
        self._origin = ((H - ch) // 2, (W - cw) // 2)
        self._crop_shape = (gh, gw)
        self._taper = np.outer(_taper_1d(gh), _taper_1d(gw)).astype(np.float32)

        # Whitened, low-passed conjugate reference spectrum: the per-frame product then only needs
        # the frame's own whitening (suite2p's recipe).
        ref_spec = np.fft.rfft2(self._prepare(bin_numpy(ref[self._win], b)))
        ref_spec = np.conj(ref_spec) / (np.abs(ref_spec) + _EPS)
        fy = np.fft.fftfreq(gh)[:, None]
        fx = np.fft.rfftfreq(gw)[None, :]
        ref_spec *= np.exp(-2 * np.pi**2 * smooth_sigma**2 * (fy**2 + fx**2))
        self._ref_spec = ref_spec.astype(np.complex64)

        self._crop = np.empty((gh, gw), np.float32)
        self._mag = np.empty(ref_spec.shape, np.float32)
        # Rows / columns of the correlation map holding shifts -mg..mg, in that order.
        self._rows = (np.arange(-mg, mg + 1) % gh)[:, None]
        self._cols = (np.arange(-mg, mg + 1) % gw)[None, :]
        self.last_shift = np.zeros(2)
        self.last_peak = 0.0
        self._res = np.zeros(3)
        self._eps32 = np.float32(_EPS)

    def _prepare(self, crop: np.ndarray) -> np.ndarray:
        """Remove the mean and taper the edges, in place, so the crop border adds no false peak."""
        crop -= crop.mean()
        crop *= self._taper
        return crop

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        self.in_spec.check(inp, "register input")
        dy, dx, peak = self.estimate(inp)
        self.last_shift[0], self.last_shift[1] = dy, dx
        self.last_peak = peak
        # NumPy slice copies (3 per frame) timed faster than the Numba shift kernel at 512x512
        # (one-off timing, not saved): both backends use them.
        shift_into(inp, out, -int(round(dy)), -int(round(dx)))

    def estimate(self, frame: np.ndarray) -> tuple[float, float, float]:
        """(dy, dx, peak) of `frame` relative to the reference, without correcting it."""
        if self.backend == "numba":
            return self._estimate_numba(frame)
        return self._estimate_numpy(frame)

    def _estimate_numba(self, frame: np.ndarray) -> tuple[float, float, float]:
        crop = self._crop
        # In one-off timings at 256x256 (not saved): NumPy copy + mean + taper beat the fused Numba
        # kernel (its serial float64 sum); Numba won the spectral whitening and the peak search;
        # scipy.fft beat np.fft. `rtdecode bench extract` times the register stage as it is.
        b = self.downsample
        if b == 1:
            np.copyto(crop, frame[self._win], casting="unsafe")
        else:
            _k.bin_into(frame, self._origin[0], self._origin[1], b, crop)
        self._prepare(crop)
        X = _fft.rfft2(crop, workers=1)
        _k.whiten_multiply(X, self._ref_spec, self._eps32)
        cc = _fft.irfft2(X, s=self._crop_shape, workers=1, overwrite_x=True)
        _k.find_peak(cc, self.max_shift, self._res)
        return float(self._res[0]) * b, float(self._res[1]) * b, float(self._res[2])

    def _estimate_numpy(self, frame: np.ndarray) -> tuple[float, float, float]:
        """The NumPy reference of `estimate`."""
        crop = self._crop
        np.copyto(crop, bin_numpy(frame[self._win], self.downsample))
        self._prepare(crop)
        X = np.fft.rfft2(crop)
        np.abs(X, out=self._mag)
        self._mag += _EPS
        X /= self._mag
        X *= self._ref_spec
        cc = np.fft.irfft2(X, s=self._crop_shape)

        win = cc[self._rows, self._cols]
        iy, ix = np.unravel_index(int(np.argmax(win)), win.shape)
        m = self.max_shift
        ch, cw = self._crop_shape
        ry, rx = (iy - m) % ch, (ix - m) % cw  # peak position in cc
        c0 = float(cc[ry, rx])
        fy = _parabolic(float(cc[ry - 1, rx]), c0, float(cc[(ry + 1) % ch, rx]))
        fx = _parabolic(float(cc[ry, rx - 1]), c0, float(cc[ry, (rx + 1) % cw]))
        b = self.downsample
        return (iy - m + fy) * b, (ix - m + fx) * b, c0

    def reset(self) -> None:
        self.last_shift[:] = 0
        self.last_peak = 0.0


def shift_into(src: np.ndarray, dst: np.ndarray, dy: int, dx: int) -> None:
    """dst[y, x] = src[y - dy, x - dx] (integer shift, like np.roll without wrapping).

    The rows / columns left uncovered repeat the nearest valid one. src and dst (H, W), distinct.
    """
    H, W = src.shape
    dy = max(-(H - 1), min(H - 1, dy))
    dx = max(-(W - 1), min(W - 1, dx))
    dst[max(dy, 0) : H + min(dy, 0), max(dx, 0) : W + min(dx, 0)] = (
        src[max(-dy, 0) : H - max(dy, 0), max(-dx, 0) : W - max(dx, 0)]
    )
    if dy > 0:
        dst[:dy] = dst[dy : dy + 1]
    elif dy < 0:
        dst[H + dy :] = dst[H + dy - 1 : H + dy]
    if dx > 0:
        dst[:, :dx] = dst[:, dx : dx + 1]
    elif dx < 0:
        dst[:, W + dx :] = dst[:, W + dx - 1 : W + dx]


def reference_from(frames: np.ndarray, n_iter: int = 1, **register_kw) -> np.ndarray:
    """(T, H, W) frames -> (H, W) float32 reference image.

    Starts from the plain mean (blurred by motion), then `n_iter` times registers every frame to
    it and averages the corrected frames, which sharpens it. register_kw go to `Register`.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise StageError(
            f"reference_from: expected frames of shape (T, H, W) with T >= 1, got {frames.shape}"
        )
    ref = frames.mean(axis=0, dtype=np.float64).astype(np.float32)
    if frames.dtype != np.uint16:
        frames = np.clip(np.rint(frames), 0, np.iinfo(np.uint16).max).astype(np.uint16)
    for _ in range(n_iter):
        reg = Register(ref, **register_kw)
        acc = np.zeros(ref.shape, np.float64)
        out = reg.out_spec.empty()
        for f in frames:
            reg.process(f, out)
            acc += out
        ref = (acc / len(frames)).astype(np.float32)
    return ref


def bin_numpy(region: np.ndarray, b: int) -> np.ndarray:
    """(h, w) region, h and w multiples of b -> float32 (h/b, w/b) block means (the reference of
    kernels.bin_into)."""
    h, w = region.shape
    r = np.asarray(region, np.float32)
    if b == 1:
        return r.copy()
    return r.reshape(h // b, b, w // b, b).sum(axis=(1, 3), dtype=np.float32) * np.float32(1.0 / (b * b))


def _taper_1d(n: int) -> np.ndarray:
    """1 in the middle, raised-cosine ramps over n/8 samples at both ends."""
    k = max(1, n // 8)
    w = np.ones(n)
    ramp = 0.5 * (1 - np.cos(np.pi * (np.arange(k) + 0.5) / k))
    w[:k] = ramp
    w[n - k :] = ramp[::-1]
    return w


def _parabolic(left: float, centre: float, right: float) -> float:
    """Offset (-0.5..0.5) of the vertex of the parabola through three equally spaced samples."""
    den = left - 2 * centre + right
    if den >= 0:  # not a maximum (flat or noisy): no refinement
        return 0.0
    return float(np.clip(0.5 * (left - right) / den, -0.5, 0.5))
