"""A ground-truth mouse V1 population for the virtual rig.

Each neuron is a linear-nonlinear-Poisson unit with a spatial receptive field in a retinotopic
patch of the screen, a biphasic temporal kernel (peak 50-130 ms), a static nonlinearity and gain
modulation by running and pupil size. Three kinds:
  - simple cells: a Gabor filter, half-wave rectified;
  - complex cells: the energy of a quadrature pair of Gabors (phase-invariant, hard to decode linearly);
  - ON/OFF cells: a difference of Gaussians (luminance contrast).

Profiles (`PROFILES`):
  - `realistic` (the default): calibrated to published mouse V1 two-photon statistics
    (REFERENCES.md F; `python benchmarks/research/rig.py` prints them against their references): a
    majority of complex cells, weakly and unevenly driven neurons, strong private and shared
    trial-to-trial variability, running/pupil gain, and responses that look like deconvolved calcium
    (non-negative, smeared spike amplitudes plus noise, ~43 % exact zeros) rather than spike counts;
  - `realistic_v1`: the first realistic profile (reliability 0.036, 60 % complex cells), kept so the
    results measured on it can be reproduced;
  - `easy`: the original, nearly linear rig (ridge ~0.8 at 1,000 neurons); responses are spike counts.
    Kept for the unit tests that check a decoder or encoder learns at all from seconds of data.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Profile:
    """Parameters of a rig profile. Noise and gains are in units of a neuron's drive std (on a
    reference natural movie); deconvolution parameters in units of one spike's mean amplitude."""

    name: str
    kinds: tuple[float, float, float]  # fractions of simple, complex, on/off cells
    private_noise: float  # std of each neuron's private drive noise
    shared_step: float  # per-frame step of the shared log-gain random walk (arousal-like)
    shared_clip: float  # bound of the shared log-gain
    run_gain: tuple[float, float]  # uniform range of the gain per 10 cm/s of running
    pupil_gain: tuple[float, float]  # uniform range of the gain per unit pupil dilation
    visual_sigma: float = 0.0  # lognormal spread of how strongly each neuron is driven (0: all equal)
    rate_scale: float = 1.0  # multiplies every neuron's peak rate
    deconvolved: bool = False  # responses: deconvolved-calcium-like (True) or spike counts (False)
    deconv_noise: tuple[float, float] = (0.0, 0.0)  # uniform range of each neuron's noise std
    deconv_offset: float = 0.0  # subtracted before rectification (sets the fraction of zeros)
    input_noise: float = 0.0  # std of noise added to the image before the filters (normalised pixel
    #   units, smooth over ~1.5 px and ~3 frames): noise every neuron shares along stimulus directions,
    #   which more neurons cannot average away (information-limiting correlations)
    latent_factors: int = 0  # slow shared latent factors (behaviour-like, Stringer et al. 2019)
    latent_std: float = 0.0  # std of the drive they add to each neuron
    zero_dc: bool = False  # receptive fields blind to uniform luminance (zero-mean Gabors, balanced DoGs)


PROFILES = {
    # Calibrated 2026-11-29 (benchmarks/results/rig_calibration.json, "second_round"): single-trial
    # reliability ~0.1 needs rates ~5x those of realistic_v1 (Poisson and deconvolution noise set it,
    # not the private drive noise); linear decodability is then held at the paper's level by the share
    # of simple cells, the only kind a linear decoder reads the sign of contrast from.
    "realistic": Profile("realistic", (0.05, 0.90, 0.05), private_noise=0.9, shared_step=0.06, shared_clip=0.8,
                         run_gain=(0.0, 1.5), pupil_gain=(-0.2, 0.6), visual_sigma=0.6, rate_scale=5.0,
                         deconvolved=True, deconv_noise=(0.3, 0.8), deconv_offset=0.2, input_noise=0.1,
                         latent_factors=16, latent_std=0.7, zero_dc=True),
    # The first realistic profile (until 2026-11-29): reliability 0.036, 60 % complex cells; the
    # results measured on it (ridge_compress*.json, decoder_table_4000.json, ...) name it.
    "realistic_v1": Profile("realistic_v1", (0.25, 0.60, 0.15), private_noise=0.9, shared_step=0.06, shared_clip=0.8,
                            run_gain=(0.0, 1.5), pupil_gain=(-0.2, 0.6), visual_sigma=0.6, rate_scale=1.0,
                            deconvolved=True, deconv_noise=(0.3, 0.8), deconv_offset=0.0, input_noise=0.1,
                            latent_factors=16, latent_std=0.7, zero_dc=True),
    "easy": Profile("easy", (0.45, 0.30, 0.25), 0.5, 0.03, 0.5, (0.0, 0.6), (-0.1, 0.3)),
}


def _zero_mean(f: np.ndarray, env: np.ndarray) -> np.ndarray:
    """`f` minus the multiple of its envelope `env` that makes its sum zero."""
    return f - env * (f.sum() / env.sum())


class Population:
    """`n` ground-truth neurons. `respond` maps a movie and behaviour to firing rates (Hz);
    `spikes` samples spike counts; `deconvolved` turns them into the dataset's responses."""

    def __init__(self, n: int, seed: int = 0, profile: str = "realistic"):
        if not 1 <= n <= 100_000:
            raise ValueError(f"n must be between 1 and 100000 neurons, got {n}")
        if profile not in PROFILES:
            raise ValueError(f"unknown rig profile '{profile}'; valid: {', '.join(PROFILES)}")
        self.profile = prof = PROFILES[profile]
        rng = np.random.default_rng(seed)
        self.n = n
        h, w = FRAME_SHAPE
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
        kind = rng.choice(3, size=n, p=list(prof.kinds))  # 0 simple, 1 complex, 2 on/off
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
                surround = (0.6 / 1.5) ** 2 if prof.zero_dc else 0.5
                f = np.exp(-(d**2) / (2 * (0.6 * sigma[j]) ** 2)) - surround * np.exp(-(d**2) / (2 * (1.5 * sigma[j]) ** 2))
                f = sign[j] * f
            else:
                f = _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], sf[j], phase[j])
                if prof.zero_dc:
                    f = _zero_mean(f, _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], 0.0, 0.0))
            filters[:, j] = (f / np.linalg.norm(f)).ravel()
        for k, j in enumerate(complex_idx):
            g = _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], sf[j], phase[j] + np.pi / 2)
            if prof.zero_dc:
                g = _zero_mean(g, _gabor(yy, xx, cy[j], cx[j], sigma[j], theta[j], 0.0, 0.0))
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
        self.run_gain = rng.uniform(*prof.run_gain, n).astype(np.float32)
        self.pupil_gain = rng.uniform(*prof.pupil_gain, n).astype(np.float32)
        self.rmax *= np.float32(prof.rate_scale)
        # Realistic profile only (drawn after everything else, so the easy rig is unchanged):
        # how strongly each neuron is driven, and its deconvolution noise.
        self.visual = np.ones(n, np.float32)
        self.deconv_noise = np.zeros(n, np.float32)
        if prof.visual_sigma > 0:
            self.visual = rng.lognormal(-0.5 * prof.visual_sigma**2, prof.visual_sigma, n).astype(np.float32)
        if prof.deconvolved:
            self.deconv_noise = rng.uniform(*prof.deconv_noise, n).astype(np.float32)
        self.loadings = None
        if prof.latent_factors:
            k = prof.latent_factors
            self.loadings = (rng.normal(0, 1, (k, n)) * prof.latent_std / np.sqrt(k)).astype(np.float32)

        # Normalise each neuron's drive to unit std on a reference natural-statistics movie, so
        # thresholds and gains mean the same thing for every receptive field.
        from rtdecode.stimuli.movies import pink_movie

        ref = pink_movie(600, np.random.default_rng(seed + 7919))
        self.drive_scale = np.ones(n, np.float32)
        self.drive_mean = np.zeros(n, np.float32)
        d = self._drive(ref)
        self.drive_mean = d.mean(0).astype(np.float32)
        self.drive_scale = (1.0 / np.maximum(d.std(0), 1e-6)).astype(np.float32)

    def _drive(self, movie: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        """(T, 36, 64) movie -> (T, n) drive, temporally filtered; pre-stimulus screen is gray.
        With `rng` and a profile with input noise, the image is noisy before the filters."""
        T = movie.shape[0]
        x = (movie.reshape(T, -1).astype(np.float32) - 127.5) / 127.5
        if rng is not None and self.profile.input_noise > 0:
            from scipy import ndimage

            z = rng.normal(0, 1, (T,) + FRAME_SHAPE).astype(np.float32)
            z = ndimage.gaussian_filter(z, (1.0, 1.5, 1.5), mode="wrap")
            z *= self.profile.input_noise / max(float(z.std()), 1e-6)
            x = x + z.reshape(T, -1)
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
        prof = self.profile
        d = self._drive(movie, rng)
        if prof.visual_sigma > 0:
            d *= self.visual
        if rng is not None:
            T = d.shape[0]
            if self.loadings is not None:
                z = np.empty((T, self.loadings.shape[0]), np.float32)  # AR(1), time constant ~1 s
                z[0] = rng.normal(0, 1, z.shape[1])
                e = rng.normal(0, np.sqrt(1 - 0.967**2), z.shape)
                for t in range(1, T):
                    z[t] = 0.967 * z[t - 1] + e[t]
                d += z @ self.loadings
            noise = rng.normal(0, 1, (T + 2, self.n)).astype(np.float32)
            d += prof.private_noise * (noise[:-2] + noise[1:-1] + noise[2:]) / np.sqrt(3)
            shared = np.cumsum(rng.normal(0, prof.shared_step, T))
            shared = np.exp(np.clip(shared - shared.mean(), -prof.shared_clip, prof.shared_clip))
            shared = shared.astype(np.float32)[:, None]
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

    def deconvolved(self, spikes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(T, n) spike counts -> what a deconvolution of two-photon calcium gives: each spike's
        amplitude varies (lognormal, CV ~0.5), is smeared over two frames (0.7, 0.3), noise
        (per-neuron std, correlated over ~2 frames) is added, and the result rectified at 0."""
        if not self.profile.deconvolved:
            return spikes
        T = spikes.shape[0]
        amp = spikes * rng.lognormal(-0.11, 0.47, spikes.shape).astype(np.float32)
        s = 0.7 * amp
        s[1:] += 0.3 * amp[:-1]
        z = rng.normal(0, 1, (T + 1, self.n)).astype(np.float32)
        s += self.deconv_noise * (z[1:] + 0.5 * z[:-1]) / np.float32(np.sqrt(1.25))
        return np.maximum(s - self.profile.deconv_offset, 0, out=s)


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
