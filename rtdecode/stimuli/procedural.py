"""Procedural natural-like movies (NumPy only): dead leaves seen through an eye-movement path.

No photograph (packaged or otherwise) enters these movies: they are generated from a seeded
`numpy.random.Generator` alone, so they can pre-train a decoder whose check datasets are scored on
packaged photographs (issue #24 item 3).

A movie (T, H, W) float32, 0-255, 30 Hz (`FPS`), default H x W = 36 x 64 (`FRAME_SHAPE`):
  * a canvas (`CANVAS` x the frame size) of dead leaves: discs and ellipses, radii r drawn from a
    power law p(r) ~ r^-3 between `r_min` and `r_max` pixels (the scale-invariant density that
    gives dead leaves their ~1/f amplitude spectrum), uniform random gray levels, each new leaf
    occluding the ones below it; a share of the leaves carry an oriented grating texture
    (`texture_frac`) and some are half-planes (long oriented edges, `edge_frac`);
  * an eye-movement path over the canvas: slow drift (~0.8 px per frame, the direction drawn
    afresh at each saccade) and saccades to a random position at intervals drawn uniformly in
    0.3-1.0 s; each frame is a crop at the path's sub-pixel position (bilinear); a new canvas (a
    scene cut) every 2-6 s;
  * occasional object motion: with probability `object_prob` a few leaves are drawn on top of the
    crop and translate across it at a constant velocity;
  * each canvas is rescaled to a target pixel mean and standard deviation (default: 128 and 55;
    `match_stats` gives them from calibration videos), the movie clipped to 0-255.

`spectrum_slope(frames)` measures the slope of the spatial amplitude spectrum (log amplitude vs log
spatial frequency, radially averaged); natural images sit near -1 (benchmarks/results/
image_prior_synth.json records ours and the calibration movies').
"""

from __future__ import annotations

import numpy as np

FRAME_SHAPE = (36, 64)  # height, width: the Sensorium 2023 video size
FPS = 30.0
CANVAS = 3  # the canvas is CANVAS times the frame in each dimension: room for the eye to wander


def power_law_radii(n: int, r_min: float, r_max: float, rng: np.random.Generator, exponent: float = 3.0) -> np.ndarray:
    """(n,) radii in pixels, p(r) ~ r^-exponent on [r_min, r_max] (inverse-CDF sampling; exponent > 1)."""
    u = rng.random(n)
    a = 1.0 - exponent
    return ((r_max ** a - r_min ** a) * u + r_min ** a) ** (1.0 / a)


def dead_leaves(shape: tuple[int, int], rng: np.random.Generator, r_min: float = 1.5, r_max: float = 25.0,
                n_leaves: int | None = None, texture_frac: float = 0.15, edge_frac: float = 0.03) -> np.ndarray:
    """(H, W) float32 image, gray levels 0-1: dead leaves (later leaves occlude earlier ones), radii
    ~ r^-3 in pixels. `n_leaves` default: enough that the uncovered area is negligible."""
    H, W = shape
    img = np.full((H, W), rng.random(), np.float32)
    if n_leaves is None:
        # expected area per leaf for p(r) ~ r^-3: 2 pi r_min^2 r_max / (r_max + r_min) ~ 2 pi r_min^2
        n_leaves = int(5 * H * W / (2 * np.pi * r_min ** 2))
    radii = power_law_radii(n_leaves, r_min, r_max, rng)[::-1]  # the biggest first: small ones stay on top
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    for r in radii:
        cy, cx = rng.uniform(-r, H + r), rng.uniform(-r, W + r)
        if rng.random() < edge_frac:  # a half-plane: a long oriented edge through (cy, cx)
            th = rng.uniform(0, np.pi)
            m = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th) > 0
            img[m] = rng.random()
            continue
        ar = np.exp(rng.uniform(-0.7, 0.7))  # ellipse axis ratio, up to ~2:1
        th = rng.uniform(0, np.pi)
        a, b = r * np.sqrt(ar), r / np.sqrt(ar)
        y0, y1 = max(int(cy - r - 1), 0), min(int(cy + r + 2), H)
        x0, x1 = max(int(cx - r - 1), 0), min(int(cx + r + 2), W)
        if y0 >= y1 or x0 >= x1:
            continue
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = dx * np.cos(th) + dy * np.sin(th)
        v = -dx * np.sin(th) + dy * np.cos(th)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1.0
        if not m.any():
            continue
        g = rng.random()
        if r > 3 and rng.random() < texture_frac:  # an oriented grating texture inside the leaf
            period = rng.uniform(3.0, 10.0)
            phi = rng.uniform(0, np.pi)
            tex = g + 0.25 * np.sin(2 * np.pi * (dx * np.cos(phi) + dy * np.sin(phi)) / period)
            img[y0:y1, x0:x1][m] = np.clip(tex[m], 0, 1)
        else:
            img[y0:y1, x0:x1][m] = g
    return img


def eye_path(n: int, bounds: tuple[float, float], rng: np.random.Generator, drift_px_frame: float = 0.8,
             saccade_s: tuple[float, float] = (0.3, 1.0)) -> np.ndarray:
    """(n, 2) sub-pixel (y, x) offsets within [0, bounds]: fixations with a slow drift (a velocity of
    ~`drift_px_frame` px per frame per axis, drawn afresh at each saccade, plus jitter) and saccades
    to a uniform random position at intervals uniform in `saccade_s` seconds; reflected at the bounds.
    (The calibration movies' median mean absolute frame difference is ~4-28 gray levels; this path
    over dead leaves gives a similar range, recorded by the benchmark.)"""
    b = np.asarray(bounds, float)
    pos = rng.uniform(0, 1, 2) * b
    vel = rng.normal(0, drift_px_frame, 2)
    out = np.empty((n, 2))
    next_sacc = rng.uniform(*saccade_s) * FPS
    for t in range(n):
        if t >= next_sacc:
            pos = rng.uniform(0, 1, 2) * b
            vel = rng.normal(0, drift_px_frame, 2)
            next_sacc = t + rng.uniform(*saccade_s) * FPS
        pos = pos + vel + rng.normal(0, 0.1, 2)
        for k in range(2):  # reflect into [0, b]
            if pos[k] < 0:
                pos[k], vel[k] = -pos[k], -vel[k]
            if pos[k] > b[k]:
                pos[k], vel[k] = 2 * b[k] - pos[k], -vel[k]
        out[t] = np.clip(pos, 0, b)
    return out


def _crop(canvas: np.ndarray, y: float, x: float, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear (H, W) crop of `canvas` whose top-left corner is at sub-pixel (y, x)."""
    H, W = shape
    iy, ix = int(np.floor(y)), int(np.floor(x))
    fy, fx = y - iy, x - ix
    p = canvas[iy:iy + H + 1, ix:ix + W + 1]
    return ((1 - fy) * ((1 - fx) * p[:H, :W] + fx * p[:H, 1:W + 1])
            + fy * ((1 - fx) * p[1:H + 1, :W] + fx * p[1:H + 1, 1:W + 1]))


def movie(n_frames: int, rng: np.random.Generator, shape: tuple[int, int] = FRAME_SHAPE, mean: float = 128.0,
          std: float = 55.0, object_prob: float = 0.3, r_min: float = 1.5, r_max: float = 25.0,
          scene_s: tuple[float, float] = (2.0, 6.0)) -> np.ndarray:
    """(n_frames, H, W) float32 0-255: dead leaves through an eye-movement path (a fresh canvas, a
    new scene, every `scene_s` seconds), occasionally with moving objects. Each canvas's pixels
    are rescaled to `mean` / `std` (the canvas is 9 frames' area, so a frame's own statistics vary
    around the targets as a natural movie's do); the whole movie is then rescaled to `mean` / `std`
    and clipped to 0-255."""
    H, W = shape
    frames = np.empty((n_frames, H, W), np.float32)
    t = 0
    while t < n_frames:
        n = min(n_frames - t, max(1, int(rng.uniform(*scene_s) * FPS)))
        canvas = dead_leaves((CANVAS * H + 1, CANVAS * W + 1), rng, r_min, r_max)
        canvas = (canvas - canvas.mean()) / max(float(canvas.std()), 1e-3) * std + mean
        path = eye_path(n, ((CANVAS - 1) * H - 1e-3, (CANVAS - 1) * W - 1e-3), rng)
        frames[t:t + n] = np.stack([_crop(canvas, y, x, shape) for y, x in path])
        t += n
    if rng.random() < object_prob:  # a few leaves moving across the view at constant velocity
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        for _ in range(int(rng.integers(1, 4))):
            r = float(power_law_radii(1, 3.0, 12.0, rng)[0])
            g = mean + std * rng.uniform(-1.7, 1.7)
            c0 = np.array([rng.uniform(0, H), rng.uniform(0, W)])
            v = rng.normal(0, 1.0, 2)  # px / frame
            t0, t1 = sorted(rng.integers(0, n_frames + 1, 2))
            for t in range(t0, t1):
                cy, cx = c0 + v * (t - t0)
                frames[t][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = g
    for _ in range(3):  # the movie at the targets; repeated, since clipping the tails shrinks the std
        frames = np.clip((frames - frames.mean()) / max(float(frames.std()), 1e-3) * std + mean, 0.0, 255.0)
    return frames.astype(np.float32)


def movies(n: int, n_frames: int, seed: int, shape: tuple[int, int] = FRAME_SHAPE, mean: float = 128.0,
           std: float = 55.0) -> list[np.ndarray]:
    """`n` movies (n_frames, H, W) float32 0-255, reproducible from `seed`."""
    rng = np.random.default_rng([seed, 24])
    return [movie(n_frames, rng, shape, mean, std) for _ in range(n)]


def match_stats(videos: list[np.ndarray]) -> tuple[float, float]:
    """(mean, std) of the pixel values of calibration videos (T, H, W) 0-255: the targets `movie` rescales to.
    The std is the mean of the per-video stds (each movie is rescaled on its own)."""
    return float(np.mean([np.mean(v) for v in videos])), float(np.mean([np.std(v) for v in videos]))


def spectrum_slope(frames: np.ndarray, f_lo: float = 2.0, f_hi: float | None = None) -> float:
    """Slope of log radially averaged amplitude spectrum vs log spatial frequency (cycles per frame
    width, fitted between `f_lo` and `f_hi`, default a third of the Nyquist of the short side) over
    frames (T, H, W), each frame mean-removed and Hann-windowed. Natural images: about -1."""
    frames = np.asarray(frames, np.float64)
    T, H, W = frames.shape
    win = np.outer(np.hanning(H), np.hanning(W))
    f = frames - frames.mean((1, 2), keepdims=True)
    amp = np.abs(np.fft.fft2(f * win)).mean(0)
    fy = np.fft.fftfreq(H) * H * (W / H)  # in cycles per frame width, on both axes
    fx = np.fft.fftfreq(W) * W
    rad = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    f_hi = f_hi if f_hi is not None else H / 2 * (W / H) / 1.5
    edges = np.geomspace(f_lo, f_hi, 12)
    lf, la = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (rad >= lo) & (rad < hi)
        if m.any():
            lf.append(np.log(rad[m].mean())); la.append(np.log(amp[m].mean()))
    return float(np.polyfit(lf, la, 1)[0])
