"""Naturalistic stimulus movies for the virtual rig: 36x64 frames at 30 Hz, values 0-255.

Most trials are eye-movement-like paths (slow drifts, saccades) over the natural photographs that
scikit-image ships; the rest are drifting gratings, moving bars and 1/f ("pink") noise. Held-out
(`oracle`) trials use photographs that no `train` trial uses, so the decoder is scored on images it
has never seen.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

FRAME_SHAPE = (36, 64)  # height, width: the Sensorium 2023 video size
FPS = 30.0

# Photographs shipped inside scikit-image (no download needed). Cat and chelsea are the same photo,
# so only one of them is used.
TRAIN_IMAGES = (
    "astronaut", "camera", "coins", "grass", "gravel", "brick", "hubble_deep_field",
    "immunohistochemistry", "moon", "page", "text", "retina", "cell",
)
ORACLE_IMAGES = ("rocket", "coffee", "chelsea", "clock")
SYNTHETIC_KINDS = ("grating", "bars", "pink")


@functools.lru_cache(maxsize=None)
def source_image(name: str) -> np.ndarray:
    """A packaged photograph as float32 grayscale, 0-255, scaled so its short side is ~110 px.

    The scale makes a 36x64 crop cover about a third of the photo, like a mouse's view of a scene.
    """
    import skimage.data
    from skimage.color import rgb2gray

    img = getattr(skimage.data, name)()
    if img.ndim == 3:
        img = rgb2gray(img[..., :3]) * 255.0
    img = img.astype(np.float32)
    if img.max() <= 1.0:
        img = img * 255.0
    zoom = 110.0 / min(img.shape)
    img = ndimage.zoom(img, zoom, order=1, prefilter=False)
    # Stretch contrast so every source spans a similar range (page/text are nearly binary otherwise).
    lo, hi = np.percentile(img, [1, 99])
    img = np.clip((img - lo) / max(hi - lo, 1e-3), 0, 1) * 255.0
    return img.astype(np.float32)


def _eye_path(n: int, bounds: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """(n, 2) crop offsets (y, x): fixations with slow drift and saccades every 0.3-1.2 s."""
    path = np.empty((n, 2))
    pos = rng.uniform(0, 1, 2) * bounds
    drift = rng.normal(0, 0.4, 2)
    next_saccade = int(rng.uniform(0.3, 1.2) * FPS)
    for t in range(n):
        if t == next_saccade:
            pos = rng.uniform(0, 1, 2) * bounds
            drift = rng.normal(0, 0.4, 2)
            next_saccade = t + int(rng.uniform(0.3, 1.2) * FPS)
        pos = np.clip(pos + drift, 0, bounds)
        path[t] = pos
    return path


def photo_movie(name: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 36, 64) float32: an eye-movement path over one photograph."""
    img = source_image(name)
    h, w = FRAME_SHAPE
    bounds = np.array([img.shape[0] - h - 1, img.shape[1] - w - 1], float)
    path = _eye_path(n_frames, bounds, rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n_frames, h, w), np.float32)
    for t, (oy, ox) in enumerate(path):
        ndimage.map_coordinates(img, [yy + oy, xx + ox], output=out[t], order=1, mode="reflect")
    return out


def grating_movie(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Drifting sinusoidal gratings; direction, spatial and temporal frequency change every ~1 s."""
    h, w = FRAME_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n_frames, h, w), np.float32)
    seg = int(FPS)
    for start in range(0, n_frames, seg):
        theta = rng.uniform(0, np.pi * 2)
        sf = rng.uniform(0.02, 0.12)  # cycles per pixel
        tf = rng.uniform(0.5, 3.0) / FPS  # cycles per frame
        contrast = rng.uniform(0.4, 1.0)
        proj = np.cos(theta) * xx + np.sin(theta) * yy
        for t in range(start, min(start + seg, n_frames)):
            out[t] = 127.5 + 127.5 * contrast * np.sin(2 * np.pi * (sf * proj - tf * t))
    return out


def bars_movie(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Light or dark bars sweeping across a gray screen at random orientations and speeds."""
    h, w = FRAME_SHAPE
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.full((n_frames, h, w), 127.5, np.float32)
    t = 0
    while t < n_frames:
        theta = rng.uniform(0, np.pi * 2)
        width = rng.uniform(3, 10)
        speed = rng.uniform(1, 3)  # px per frame
        sign = rng.choice([-1.0, 1.0])
        proj = np.cos(theta) * (xx - w / 2) + np.sin(theta) * (yy - h / 2)
        span = np.hypot(h, w) / 2 + width
        n = int(2 * span / speed)
        for k in range(min(n, n_frames - t)):
            centre = -span + k * speed
            out[t + k] += sign * 120.0 * (np.abs(proj - centre) < width / 2)
        t += n
    return out


def pink_movie(n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """Eye-movement path over a fresh 1/f-noise image: natural-image statistics, endless variety."""
    n = 256
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.rfftfreq(n)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    spec = (rng.normal(size=f.shape) + 1j * rng.normal(size=f.shape)) / f
    img = np.fft.irfft2(spec, s=(n, n))
    img = (img - img.mean()) / img.std()
    img = np.clip(127.5 + 50.0 * img, 0, 255).astype(np.float32)
    h, w = FRAME_SHAPE
    path = _eye_path(n_frames, np.array([n - h - 1, n - w - 1], float), rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n_frames, h, w), np.float32)
    for t, (oy, ox) in enumerate(path):
        ndimage.map_coordinates(img, [yy + oy, xx + ox], output=out[t], order=1)
    return out


def make_movie(source: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """(n_frames, 36, 64) float32 in 0-255 from a photograph name or a synthetic kind."""
    if source == "grating":
        movie = grating_movie(n_frames, rng)
    elif source == "bars":
        movie = bars_movie(n_frames, rng)
    elif source == "pink":
        movie = pink_movie(n_frames, rng)
    else:
        movie = photo_movie(source, n_frames, rng)
    return np.clip(movie, 0, 255, out=movie)


def trial_sources(n_train: int, n_oracle: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """(tier, source) per trial: train trials mix photographs (60%) and synthetic kinds; oracle
    trials cycle through the held-out photographs."""
    out = []
    for i in range(n_train):
        if rng.uniform() < 0.6:
            out.append(("train", TRAIN_IMAGES[rng.integers(len(TRAIN_IMAGES))]))
        else:
            out.append(("train", SYNTHETIC_KINDS[rng.integers(len(SYNTHETIC_KINDS))]))
    for i in range(n_oracle):
        out.append(("oracle", ORACLE_IMAGES[i % len(ORACLE_IMAGES)]))
    return out
