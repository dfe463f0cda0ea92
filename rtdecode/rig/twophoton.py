"""A virtual two-photon microscope: spike counts of a simulated population in, raw frames out.

The ground truth (calcium, noise-free cell fluorescence, applied motion) is recorded frame by frame,
so that the extraction stages can be scored against it.

Image model of one frame, in detector counts (12-bit, like ScanImage's int16 data clipped at 0):

    clean(y, x) = drift_t * ( background(y, x)                          # tissue, dark vessels
                              + neuropil_t * np_map(y, x)                # smooth; weaker on cells
                              + sum_i lam_i(y, x) * F_i,t )              # F = base * (1 + amp * c)
    frame(y, x) = clip(clean(y - dy_t, x - dx_t) + shot noise, 0, 4095)

Shot noise is the Gaussian approximation of `gain * Poisson(clean / gain)` (variance gain * clean).

Motion is integer-pixel only: a smooth bounded random walk, rounded to whole pixels when applied.
The sign convention, shared with `rtdecode.extract.register`: a shift (dy, dx) means the content
moved by +dy rows and +dx columns, i.e. frame[y, x] = clean[y - dy, x - dx] (like np.roll). The
tissue is rendered on a canvas padded by the largest motion, so the frame edges show real tissue
that moves in, not wrapped or blank pixels.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from scipy import sparse

from rtdecode.errors import ConfigError, StageError

log = logging.getLogger(__name__)

MAX_COUNT = 4095  # 12-bit digitiser range

_BORDER_PX = 8  # footprints keep at least this far from the frame edge
_RADIUS_PX = (4.0, 7.0)  # range of the footprint ellipse semi-axes


class Microscope:
    """Renders raw two-photon frames of `n_cells` neurons, with known ground truth.

    Geometry (footprints, brightness, background) depends only on `seed`; the time course
    (neuropil, drift, motion, noise) comes from a second stream restarted by `reset()`.

    Parameters, all in detector counts unless stated:
        n_cells: number of neurons.
        seed: seeds the geometry and (unless `reset(seed)` says otherwise) the time course.
        frame_shape: (H, W) pixels.
        fps: frame rate, Hz.
        tau_s: calcium decay time constant, s.
        motion_px: bound of the rigid motion random walk, px (0 = no motion).
        amp: (low, high) range of the per-cell fractional fluorescence increase per unit calcium.
        base: (low, high) range of the per-cell resting brightness at the footprint peak.
        background: mean tissue background.
        neuropil: mean neuropil level.
        neuropil_cv: std of the neuropil's own slow fluctuation, as a fraction of its level.
        neuropil_pop: neuropil increase per unit of the population's mean calcium (fraction).
        neuropil_in_cell: fraction of the neuropil still seen on cell pixels (somata occlude it);
            0.7 makes r = 0.7 the right neuropil coefficient.
        drift: std of the slow multiplicative baseline drift (fraction; time constant 60 s).
        gain: counts per photon; shot-noise variance is gain * counts. 0 disables noise.
        record_truth: keep the per-frame ground truth (memory grows with the number of frames).
    """

    def __init__(
        self,
        n_cells: int,
        seed: int = 0,
        frame_shape: tuple[int, int] = (512, 512),
        fps: float = 30.0,
        tau_s: float = 0.7,
        motion_px: float = 2.0,
        *,
        amp: tuple[float, float] = (0.5, 1.0),
        base: tuple[float, float] = (250.0, 600.0),
        background: float = 150.0,
        neuropil: float = 300.0,
        neuropil_cv: float = 0.25,
        neuropil_pop: float = 0.1,
        neuropil_in_cell: float = 0.7,
        drift: float = 0.03,
        gain: float = 50.0,
        record_truth: bool = True,
    ):
        H, W = (int(s) for s in frame_shape)
        if n_cells < 1:
            raise ConfigError(f"n_cells must be >= 1, got {n_cells}")
        if min(H, W) < 2 * (_BORDER_PX + _RADIUS_PX[1]) + 2:
            raise ConfigError(f"frame_shape {frame_shape} is too small to hold cells away from the border")
        if fps <= 0 or tau_s <= 0:
            raise ConfigError(f"fps and tau_s must be > 0, got fps={fps}, tau_s={tau_s}")
        if motion_px < 0 or gain < 0:
            raise ConfigError(f"motion_px and gain must be >= 0, got {motion_px}, {gain}")

        self.n_cells = int(n_cells)
        self.seed = int(seed)
        self.frame_shape = (H, W)
        self.fps = float(fps)
        self.tau_s = float(tau_s)
        self.gamma = math.exp(-1.0 / (fps * tau_s))
        self.motion_px = float(motion_px)
        self.neuropil = float(neuropil)
        self.neuropil_cv = float(neuropil_cv)
        self.neuropil_pop = float(neuropil_pop)
        self.drift = float(drift)
        self.gain = float(gain)
        self.record_truth = record_truth
        self.pad = int(math.ceil(motion_px))
        Hc, Wc = H + 2 * self.pad, W + 2 * self.pad

        rng = np.random.default_rng([self.seed, 0])
        self.centres = _place_centres(rng, self.n_cells, H, W, _BORDER_PX + _RADIUS_PX[1])
        self.ypix, self.xpix, self.lam = [], [], []
        for cy, cx in self.centres:
            y, x, lam = _ellipse_footprint(rng, cy, cx)
            self.ypix.append(y)
            self.xpix.append(x)
            self.lam.append(lam)
        self.base = rng.uniform(*base, self.n_cells).astype(np.float32)
        self.amp = rng.uniform(*amp, self.n_cells).astype(np.float32)

        # Canvas coordinates, in frame pixels (the frame's (0, 0) is canvas (pad, pad)).
        yy = np.arange(Hc, dtype=np.float32)[:, None] - self.pad
        xx = np.arange(Wc, dtype=np.float32)[None, :] - self.pad
        vessels = _vessels(rng, yy, xx, H, W)
        self.background = (background * (1 + 0.2 * _smooth_field(rng, yy, xx)) * vessels).astype(np.float32)
        np_map = np.clip(1 + 0.3 * _smooth_field(rng, yy, xx), 0.2, None) * vessels

        # Cells: canvas-pixel x cell matrix, so that the cell image is one sparse mat-vec.
        pix = np.concatenate([(y + self.pad) * Wc + (x + self.pad) for y, x in zip(self.ypix, self.xpix)])
        cell = np.concatenate([np.full(len(y), i) for i, y in enumerate(self.ypix)])
        self._cells = sparse.csr_array(
            (np.concatenate(self.lam), (pix, cell)), shape=(Hc * Wc, self.n_cells), dtype=np.float32
        )
        on_cell = np.zeros(Hc * Wc, bool)
        on_cell[pix] = True
        np_map = np_map.reshape(-1)
        np_map[on_cell] *= neuropil_in_cell
        self.np_map = np_map.reshape(Hc, Wc).astype(np.float32)

        # Per-frame buffers, so that render() allocates little.
        self._canvas = np.empty((Hc, Wc), np.float32)
        self._mean = np.empty((H, W), np.float32)
        self._noise = np.empty((H, W), np.float32)
        self._z = np.empty((H, W), np.float32)
        self._F = np.empty(self.n_cells, np.float32)
        self.reset()

    # ----------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """Restart the time state (calcium, neuropil, drift, motion, noise) and clear the truth.

        seed: seed of the time course; None restarts the one given at construction, so that the
        same spikes render the same frames again. The geometry never changes.
        """
        self._rng = np.random.default_rng([self.seed if seed is None else int(seed), 1])
        self.c = np.zeros(self.n_cells, np.float32)
        self._np_z = 0.0  # neuropil's own slow fluctuation, unit std
        self._drift_z = 0.0  # baseline drift, unit std
        self._pos = np.zeros(2)  # motion random walk, px
        self._vel = np.zeros(2)
        self.t = 0
        self._truth = {k: [] for k in ("spikes", "calcium", "F", "shifts", "neuropil", "drift")}

    @property
    def mean_image(self) -> np.ndarray:
        """(H, W) float32 expected image at rest (no calcium, no motion, no noise), in counts."""
        cells = (self._cells @ self.base).reshape(self._canvas.shape)
        img = self.background + self.neuropil * self.np_map + cells
        p = self.pad
        return np.ascontiguousarray(img[p : p + self.frame_shape[0], p : p + self.frame_shape[1]])

    def render(self, spikes_t: np.ndarray) -> np.ndarray:
        """spikes_t: (n_cells,) non-negative spike counts of this frame -> uint16 (H, W) raw frame.

        Advances the time state by one frame and records its ground truth.
        """
        s = np.asarray(spikes_t)
        if s.shape != (self.n_cells,):
            raise StageError(f"render: expected spikes of shape ({self.n_cells},), got {s.shape}")
        if not np.all(s >= 0):  # also catches NaN
            raise StageError("render: spike counts must be finite and >= 0")
        rng = self._rng
        self.c *= self.gamma
        self.c += s

        F = self._F
        np.multiply(self.amp, self.c, out=F)
        F += 1
        F *= self.base

        # Slow fluctuations: AR(1) processes with unit stationary std.
        rho = math.exp(-1.0 / (self.fps * 1.0))  # neuropil fluctuates on a ~1 s scale
        self._np_z = rho * self._np_z + math.sqrt(1 - rho * rho) * rng.standard_normal()
        rho = math.exp(-1.0 / (self.fps * 60.0))  # drift over minutes
        self._drift_z = rho * self._drift_z + math.sqrt(1 - rho * rho) * rng.standard_normal()
        pop = float(self.c.mean())
        np_t = max(0.0, self.neuropil * (1 + self.neuropil_pop * pop + self.neuropil_cv * self._np_z))
        drift_t = max(0.1, 1 + self.drift * self._drift_z)
        dy, dx = self._step_motion(rng)

        canvas = self._canvas
        np.multiply(self.np_map, np_t, out=canvas)
        canvas += self.background
        canvas += (self._cells @ F).reshape(canvas.shape)

        H, W = self.frame_shape
        p = self.pad
        view = canvas[p - dy : p - dy + H, p - dx : p - dx + W]
        mean = self._mean
        np.multiply(view, drift_t, out=mean)
        if self.gain > 0:
            noise = self._noise
            np.maximum(mean, 0, out=noise)
            noise *= self.gain
            np.sqrt(noise, out=noise)
            z = self._z
            rng.standard_normal(dtype=np.float32, out=z)
            z *= noise
            mean += z
        np.rint(mean, out=mean)
        np.clip(mean, 0, MAX_COUNT, out=mean)
        frame = mean.astype(np.uint16)

        if self.record_truth:
            tr = self._truth
            tr["spikes"].append(s.astype(np.float32))
            tr["calcium"].append(self.c.copy())
            tr["F"].append(F.copy())
            tr["shifts"].append((dy, dx))
            tr["neuropil"].append(np_t)
            tr["drift"].append(drift_t)
        self.t += 1
        return frame

    def _step_motion(self, rng: np.random.Generator) -> tuple[int, int]:
        """Advance the motion walk; returns the integer shift (dy, dx) applied to this frame."""
        if self.motion_px == 0:
            return 0, 0
        # Velocity is an AR(1) process, so the position wanders smoothly; bounce off the bound.
        self._vel = 0.9 * self._vel + 0.05 * self.motion_px * rng.standard_normal(2)
        self._pos += self._vel
        out = np.abs(self._pos) > self.motion_px
        self._pos[out] = np.clip(self._pos[out], -self.motion_px, self.motion_px)
        self._vel[out] *= -0.5
        dy, dx = np.rint(self._pos).astype(int)
        return int(dy), int(dx)

    def render_movie(self, spikes: np.ndarray) -> np.ndarray:
        """spikes: (T, n_cells) spike counts -> (T, H, W) uint16 frames (continues the time state)."""
        spikes = np.asarray(spikes)
        if spikes.ndim != 2 or spikes.shape[1] != self.n_cells:
            raise StageError(
                f"render_movie: expected spikes of shape (T, {self.n_cells}), got {spikes.shape}"
            )
        movie = np.empty((spikes.shape[0], *self.frame_shape), np.uint16)
        for t in range(spikes.shape[0]):
            movie[t] = self.render(spikes[t])
        return movie

    def poisson_spikes(self, n_frames: int, rate_hz: float = 2.0, seed: int = 0) -> np.ndarray:
        """(n_frames, n_cells) float32 Poisson spike counts at `rate_hz` per cell, seeded."""
        rng = np.random.default_rng([int(seed), 2])
        return rng.poisson(rate_hz / self.fps, (n_frames, self.n_cells)).astype(np.float32)

    # ----------------------------------------------------------------------------------------
    @property
    def truth(self) -> dict:
        """Ground truth of the frames rendered since the last reset, as arrays (T = frames):
        'spikes', 'calcium', 'F' (T, n_cells) float32 (F = noise-free cell fluorescence
        base * (1 + amp * c), before drift); 'shifts' (T, 2) float32 (dy, dx) applied;
        'neuropil' (T,) neuropil level; 'drift' (T,) multiplicative drift; all float32."""
        tr = self._truth
        n, T = self.n_cells, len(tr["F"])
        out = {k: (np.array(tr[k], np.float32) if T else np.zeros((0, n), np.float32))
               for k in ("spikes", "calcium", "F")}
        out["shifts"] = np.array(tr["shifts"], np.float32).reshape(T, 2)
        out["neuropil"] = np.array(tr["neuropil"], np.float32)
        out["drift"] = np.array(tr["drift"], np.float32)
        return out

    def save_truth(self, folder) -> None:
        """Write the ground truth as plain .npy files (spikes, calcium, F, shifts, neuropil, drift)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for k, v in self.truth.items():
            np.save(folder / f"{k}.npy", v, allow_pickle=False)

    def save_rois(self, folder) -> None:
        """Write the footprints in suite2p's layout: stat.npy, iscell.npy, ops.npy.

        stat.npy is an object array of dicts ('ypix', 'xpix', 'lam', 'med', 'npix'), so it needs
        pickling: that is suite2p's own format. ops['meanImg'] is `mean_image` (at rest, no motion).
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        stat = np.empty(self.n_cells, dtype=object)
        for i in range(self.n_cells):
            y, x = self.ypix[i], self.xpix[i]
            stat[i] = {
                "ypix": y.astype(np.int32),
                "xpix": x.astype(np.int32),
                "lam": self.lam[i].astype(np.float32),
                "med": [int(np.median(y)), int(np.median(x))],
                "npix": int(len(y)),
            }
        np.save(folder / "stat.npy", stat, allow_pickle=True)
        prob = np.random.default_rng([self.seed, 3]).uniform(0.8, 1.0, self.n_cells)
        np.save(folder / "iscell.npy", np.column_stack([np.ones(self.n_cells), prob]), allow_pickle=False)
        H, W = self.frame_shape
        ops = {"meanImg": self.mean_image, "Ly": H, "Lx": W, "fs": self.fps}
        np.save(folder / "ops.npy", ops, allow_pickle=True)


# --------------------------------------------------------------------------------------------
def _place_centres(rng: np.random.Generator, n: int, H: int, W: int, margin: float) -> np.ndarray:
    """(n, 2) float centres at least `margin` px from the edges, kept apart (random sequential
    placement; the spacing shrinks if the frame is too crowded for it)."""
    lo = np.array([margin, margin])
    hi = np.array([H - 1 - margin, W - 1 - margin])
    area = float(np.prod(hi - lo))
    # 0.7 of the mean spacing stays well below the jamming density of random placement.
    d_min = min(2 * _RADIUS_PX[1], 0.7 * math.sqrt(area / n))
    centres = np.empty((n, 2))
    k = tries = 0
    while k < n:
        for p in rng.uniform(lo, hi, size=(64, 2)):
            if k == 0 or np.min(np.sum((centres[:k] - p) ** 2, axis=1)) >= d_min * d_min:
                centres[k] = p
                k += 1
                if k == n:
                    break
        tries += 64
        if tries > 50 * n:
            d_min *= 0.9
            tries = 0
            log.debug("placing %d cells: spacing lowered to %.1f px", n, d_min)
    return centres


def _ellipse_footprint(rng: np.random.Generator, cy: float, cx: float):
    """Pixels (ypix, xpix int arrays) and weights (lam float32, peak ~1) of one elliptic cell."""
    ry, rx = rng.uniform(*_RADIUS_PX, 2)
    th = rng.uniform(0, np.pi)
    r = int(math.ceil(_RADIUS_PX[1]))
    y, x = np.mgrid[int(cy) - r : int(cy) + r + 2, int(cx) - r : int(cx) + r + 2]
    u = (y - cy) * math.cos(th) + (x - cx) * math.sin(th)
    v = -(y - cy) * math.sin(th) + (x - cx) * math.cos(th)
    d2 = (u / ry) ** 2 + (v / rx) ** 2
    inside = d2 <= 1
    lam = np.exp(-2 * d2[inside]) * rng.uniform(0.9, 1.1, int(inside.sum()))
    return y[inside].astype(np.int64), x[inside].astype(np.int64), lam.astype(np.float32)


def _smooth_field(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, k: int = 8) -> np.ndarray:
    """Zero-mean, roughly unit-std smooth field: k random plane waves of 60-300 px wavelength."""
    f = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), np.float32)
    for _ in range(k):
        wl, th, ph = rng.uniform(60, 300), rng.uniform(0, 2 * np.pi), rng.uniform(0, 2 * np.pi)
        f += np.cos(2 * np.pi / wl * (yy * math.cos(th) + xx * math.sin(th)) + ph)
    return f / math.sqrt(k / 2)


def _vessels(rng: np.random.Generator, yy, xx, H: int, W: int, n: int = 3) -> np.ndarray:
    """Multiplicative map (<= 1) with a few dark straight vessels of 2-5 px half-width."""
    dark = np.zeros(np.broadcast_shapes(yy.shape, xx.shape), np.float32)
    for _ in range(n):
        py, px, th, w = rng.uniform(0, H), rng.uniform(0, W), rng.uniform(0, np.pi), rng.uniform(2, 5)
        dist = (yy - py) * math.cos(th) - (xx - px) * math.sin(th)
        np.maximum(dark, np.exp(-0.5 * (dist / w) ** 2), out=dark)
    return 1 - 0.6 * dark
