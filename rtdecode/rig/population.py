"""A ground-truth mouse V1 population for the virtual rig.

Each neuron is a linear-nonlinear-Poisson unit with a spatial receptive field in a retinotopic
patch of the screen, a biphasic temporal kernel (peak 50-130 ms), a static nonlinearity and gain
modulation by running and pupil size. Three kinds, in V1-like proportions:
  - simple cells: a Gabor filter, half-wave rectified;
  - complex cells: the energy of a quadrature pair of Gabors (phase-invariant, hard to decode linearly);
  - ON/OFF cells: a difference of Gaussians (luminance contrast).
"""

from __future__ import annotations

import numpy as np

from rtdecode.stimuli.movies import FPS, FRAME_SHAPE

KERNEL_LEN = 10  # frames of temporal kernel (333 ms at 30 Hz)

# Retinotopic patch (in pixels of the 36x64 frame) where receptive-field centres lie.
PATCH_CENTRE = (18.0, 32.0)
PATCH_HALF = (9.0, 15.0)


def rf_patch_mask() -> np.ndarray:
    """(36, 64) bool: the region of the screen covered by receptive-field centres."""
    h, w = FRAME_SHAPE
    yy, xx = np.mgrid[0:h, 0:w]
    return (np.abs(yy - PATCH_CENTRE[0]) <= PATCH_HALF[0]) & (np.abs(xx - PATCH_CENTRE[1]) <= PATCH_HALF[1])


def _gabor(yy, xx, cy, cx, sigma, theta, sf, phase, aspect=1.5):
    yr = (yy - cy) * np.cos(theta) - (xx - cx) * np.sin(theta)
    xr = (yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta)
    env = np.exp(-(xr**2 + (yr / aspect) ** 2) / (2 * sigma**2))
    return env * np.cos(2 * np.pi * sf * xr + phase)


class Population:
    """`n` ground-truth neurons. `respond` maps a movie and behaviour to firing rates (Hz)."""

    def __init__(self, n: int, seed: int = 0):
        if not 1 <= n <= 100_000:
            raise ValueError(f"n must be between 1 and 100000 neurons, got {n}")
        rng = np.random.default_rng(seed)
        self.n = n
        h, w = FRAME_SHAPE
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        kind = rng.choice(3, size=n, p=[0.45, 0.30, 0.25])  # 0 simple, 1 complex, 2 on/off
        self.kind = kind
        cy = PATCH_CENTRE[0] + rng.uniform(-1, 1, n) * PATCH_HALF[0]
        cx = PATCH_CENTRE[1] + rng.uniform(-1, 1, n) * PATCH_HALF[1]
        self.centres = np.stack([cy, cx], 1)
        sigma = rng.uniform(2.0, 5.0, n)
        theta = rng.uniform(0, np.pi, n)
        sf = rng.uniform(0.03, 0.10, n)
        phase = rng.uniform(0, 2 * np.pi, n)
        sign = rng.choice([-1.0, 1.0], n)

        # Spatial filters: column j of `filters` is neuron j's (first) filter; complex cells also get
        # the quadrature partner in `quad`.
        filters = np.empty((h * w, n), np.float32)
        complex_idx = np.flatnonzero(kind == 1)
        quad = np.empty((h * w, complex_idx.size), np.float32)
        for j in range(n):
            if kind[j] == 2:
                d = np.hypot(yy - cy[j], xx - cx[j])
                f = np.exp(-(d**2) / (2 * (0.6 * sigma[j]) ** 2)) - 0.5 * np.exp(-(d**2) / (2 * (1.5 * sigma[j]) ** 2))
                f = sign[j] * f
            else:
                f = _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], sf[j], phase[j])
            filters[:, j] = (f / np.linalg.norm(f)).ravel()
        for k, j in enumerate(complex_idx):
            g = _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], sf[j], phase[j] + np.pi / 2)
            quad[:, k] = (g / np.linalg.norm(g)).ravel()
        self.filters, self.quad, self.complex_idx = filters, quad, complex_idx

        # Biphasic temporal kernels, peak 1.5-4 frames, a weaker negative lobe.
        t = np.arange(KERNEL_LEN, dtype=np.float64)[:, None]
        tau = rng.uniform(1.5, 4.0, n)[None, :]
        kern = (t / tau) * np.exp(1 - t / tau) - 0.3 * (t / (2 * tau)) * np.exp(1 - t / (2 * tau))
        self.kernels = (kern / np.abs(kern).sum(0, keepdims=True)).astype(np.float32)  # (K, n)

        self.threshold = rng.normal(0.5, 0.3, n).astype(np.float32)  # in units of drive std
        self.rmax = rng.lognormal(np.log(4.0), 0.5, n).astype(np.float32)  # Hz at 1 std above threshold
        self.baseline = rng.uniform(0.2, 1.0, n).astype(np.float32)  # Hz
        self.run_gain = rng.uniform(0.0, 0.6, n).astype(np.float32)
        self.pupil_gain = rng.uniform(-0.1, 0.3, n).astype(np.float32)

        # Normalise each neuron's drive to unit std on a reference natural-statistics movie, so
        # thresholds and gains mean the same thing for every receptive field.
        from rtdecode.stimuli.movies import pink_movie

        ref = pink_movie(600, np.random.default_rng(seed + 7919))
        self.drive_scale = np.ones(n, np.float32)
        self.drive_mean = np.zeros(n, np.float32)
        d = self._drive(ref)
        self.drive_mean = d.mean(0).astype(np.float32)
        self.drive_scale = (1.0 / np.maximum(d.std(0), 1e-6)).astype(np.float32)

    def _drive(self, movie: np.ndarray) -> np.ndarray:
        """(T, 36, 64) movie -> (T, n) drive, temporally filtered; pre-stimulus screen is gray."""
        T = movie.shape[0]
        x = (movie.reshape(T, -1).astype(np.float32) - 127.5) / 127.5
        x = np.concatenate([np.zeros((KERNEL_LEN - 1, x.shape[1]), np.float32), x])
        lin = self._temporal(x @ self.filters, T)
        if self.complex_idx.size:
            k = self.kernels[:, self.complex_idx]
            a = self._temporal(x @ self.filters[:, self.complex_idx], T, k)
            b = self._temporal(x @ self.quad, T, k)
            lin[:, self.complex_idx] = np.sqrt(a**2 + b**2)
        simple = self.kind == 0
        lin[:, simple] = np.maximum(lin[:, simple], 0)  # half-wave rectification of simple cells
        return (lin - self.drive_mean) * self.drive_scale

    def _temporal(self, padded: np.ndarray, T: int, kernels: np.ndarray | None = None) -> np.ndarray:
        k = self.kernels if kernels is None else kernels
        out = np.zeros((T, padded.shape[1]), np.float32)
        for lag in range(KERNEL_LEN):
            out += k[lag] * padded[KERNEL_LEN - 1 - lag : KERNEL_LEN - 1 - lag + T]
        return out

    def respond(self, movie: np.ndarray, behavior: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """Firing rates (T, n) in Hz for a (T, 36, 64) movie and (2, T) behaviour (pupil, running).

        With `rng`, trial-to-trial variability is added as in real V1: private noise on each
        neuron's drive (0.5 drive std, smoothed over ~3 frames) and a slow gain shared by the
        population (arousal-like, ~20% fluctuations).
        """
        d = self._drive(movie)
        if rng is not None:
            T = d.shape[0]
            noise = rng.normal(0, 1, (T + 2, self.n)).astype(np.float32)
            d += 0.5 * (noise[:-2] + noise[1:-1] + noise[2:]) / np.sqrt(3)
            shared = np.cumsum(rng.normal(0, 0.03, T))
            shared = np.exp(np.clip(shared - shared.mean(), -0.5, 0.5)).astype(np.float32)[:, None]
        else:
            shared = 1.0
        rate = self.baseline + self.rmax * np.logaddexp(0, 2.0 * (d - self.threshold)) / 2.0
        pupil = (behavior[0] - 1.0)[:, None]
        run = np.clip(behavior[1], 0, None)[:, None] / 10.0
        rate *= np.clip(1 + self.run_gain * run + self.pupil_gain * pupil, 0.1, None) * shared
        return rate.astype(np.float32)

    def spikes(self, rates: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Poisson spike counts per frame (T, n) from rates in Hz."""
        return rng.poisson(rates / FPS).astype(np.float32)


def behavior(n_frames: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(2, T) behaviour (pupil dilation ~1 relative units, running speed cm/s) and (2, T) pupil centre."""
    t = np.arange(n_frames)
    run = np.zeros(n_frames)
    state = rng.uniform() < 0.4
    for i in range(n_frames):
        if rng.uniform() < 1 / (3 * FPS):  # bouts switch every ~3 s
            state = not state
        target = 15.0 if state else 0.0
        run[i] = (run[i - 1] if i else target) * 0.95 + 0.05 * target + rng.normal(0, 0.3)
    run = np.clip(run, 0, None)
    pupil = 1.0 + 0.02 * run + 0.1 * np.sin(2 * np.pi * t / (8 * FPS) + rng.uniform(0, 6.3))
    centre = np.cumsum(rng.normal(0, 0.05, (2, n_frames)), axis=1)
    return np.stack([pupil, run]).astype(np.float32), centre.astype(np.float32)
