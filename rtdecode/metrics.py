"""Reconstruction quality as Bauer et al. measure it (docs/design.md 3.3).

pixel_corr: per held-out trial, one Pearson correlation over all (mask pixels x frames), the first
30 frames dropped; then the mean over trials. Also the mean per-frame correlation and the same
pixel correlation over the full frame (no mask).
"""

from __future__ import annotations

import numpy as np

SKIP_FRAMES = 30


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two arrays of the same size (flattened); NaN if either is constant."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    a = a - a.mean()
    b = b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def trial_scores(recon: np.ndarray, truth: np.ndarray, mask: np.ndarray | None,
                 skip: int = SKIP_FRAMES) -> dict[str, float]:
    """Scores of one trial. recon, truth: (T, H, W); mask: (H, W) bool or None (full frame)."""
    if recon.shape != truth.shape:
        raise ValueError(f"reconstruction {recon.shape} and stimulus {truth.shape} differ in shape")
    r, t = recon[skip:], truth[skip:]
    if r.shape[0] < 2:
        raise ValueError(f"trial too short to score: {recon.shape[0]} frames, {skip} skipped")
    m = np.ones(r.shape[1:], bool) if mask is None else mask.astype(bool)
    per_frame = np.array([pearson(r[i][m], t[i][m]) for i in range(r.shape[0])])
    finite = per_frame[np.isfinite(per_frame)]  # constant frames have no correlation
    return {
        "pixel_corr": pearson(r[:, m], t[:, m]),
        "frame_corr": float(finite.mean()) if finite.size else float("nan"),
        "pixel_corr_full": pearson(r, t),
    }


def score(pairs: list[tuple[np.ndarray, np.ndarray]], mask: np.ndarray | None,
          skip: int = SKIP_FRAMES) -> dict:
    """Mean scores over trials, plus the per-trial values. `pairs` holds (recon, truth) per trial."""
    per = [trial_scores(r, t, mask, skip) for r, t in pairs]
    if not per:
        raise ValueError("no trials to score")
    out = {k: float(np.mean([p[k] for p in per])) for k in per[0]}
    out["trials"] = len(per)
    out["per_trial"] = per
    out["skip_frames"] = skip
    out["mask_pixels"] = int(mask.sum()) if mask is not None else None
    return out


def uncertainty_calibration(trials: list[tuple[np.ndarray, np.ndarray, np.ndarray]], mask: np.ndarray | None,
                            skip: int = SKIP_FRAMES, bins: int = 5) -> dict:
    """Does a per-pixel uncertainty predict the error? trials: (spread, recon, truth), each (T, H, W),
    scored where pixel_corr is (mask pixels, frames after `skip`). Returns the Pearson correlation of
    the spread with |recon - truth| over all those values, the mean spread and mean |error| in each of
    `bins` equal-count spread bins (calibrated: the error rises with the spread), and the mean |error|
    over the mean spread (1 where the spread is on the error's scale)."""
    s_all, e_all = [], []
    for s, r, t in trials:
        m = np.ones(r.shape[1:], bool) if mask is None else mask.astype(bool)
        s_all.append(np.asarray(s, np.float64)[skip:][:, m].ravel())
        e_all.append(np.abs(np.asarray(r, np.float64) - t)[skip:][:, m].ravel())
    s, e = np.concatenate(s_all), np.concatenate(e_all)
    order = np.argsort(s, kind="stable")
    groups = np.array_split(order, bins)
    return {"corr_spread_abs_error": pearson(s, e),
            "bins": [{"mean_spread": float(s[g].mean()), "mean_abs_error": float(e[g].mean())} for g in groups],
            "abs_error_over_spread": float(e.mean() / s.mean()) if s.mean() > 0 else None}


class LiveScore:
    """`pixel_corr` accumulated live, frame by frame, without keeping the frames (the live stats).

    `add(trial, frame, recon, truth)`: one decoded frame (H, W) and the stimulus image (H, W) it
    targets; frames with index < `skip` are left out, as in `trial_scores`. Per trial it keeps five
    sums over every (pixel x frame) of the full frame (or `mask`), so `summary()` gives, for each
    trial, the same Pearson correlation `trial_scores` computes offline over those frames, and the
    mean over trials (`pixel_corr`). Memory: five numbers per trial; at most `max_trials` trials
    (the oldest dropped from the mean once exceeded, counted in `trials_dropped`)."""

    def __init__(self, mask: np.ndarray | None = None, skip: int = SKIP_FRAMES, max_trials: int = 10_000):
        self.mask = None if mask is None else np.asarray(mask, bool)
        self.skip = int(skip)
        self.max_trials = int(max_trials)
        self.sums: dict = {}  # trial -> [n, sx, sy, sxx, syy, sxy]
        self.frames = 0
        self.trials_dropped = 0

    def add(self, trial, frame: int, recon: np.ndarray, truth: np.ndarray) -> None:
        if frame < self.skip or recon.shape != truth.shape:
            return
        x = np.asarray(recon, np.float64)
        y = np.asarray(truth, np.float64)
        if self.mask is not None and self.mask.shape == x.shape:
            x, y = x[self.mask], y[self.mask]
        s = self.sums.get(trial)
        if s is None:
            if len(self.sums) >= self.max_trials:
                self.sums.pop(next(iter(self.sums)))
                self.trials_dropped += 1
            s = self.sums[trial] = np.zeros(6)
        s += (x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum())
        self.frames += 1

    @staticmethod
    def _corr(s: np.ndarray) -> float:
        n, sx, sy, sxx, syy, sxy = s
        vx, vy = sxx - sx * sx / n, syy - sy * sy / n
        return float((sxy - sx * sy / n) / np.sqrt(vx * vy)) if n > 1 and vx > 0 and vy > 0 else float("nan")

    def summary(self) -> dict:
        """{pixel_corr (mean over trials), per_trial {trial: r}, trials, frames, skip_frames, mask}."""
        per = {str(k): self._corr(s) for k, s in self.sums.items() if s[0] > 0}
        vals = [v for v in per.values() if np.isfinite(v)]
        return {"pixel_corr": float(np.mean(vals)) if vals else None, "trials": len(vals), "frames": self.frames,
                "skip_frames": self.skip, "mask": "full frame" if self.mask is None else int(self.mask.sum()),
                "per_trial": {k: (round(v, 4) if np.isfinite(v) else None) for k, v in per.items()},
                "trials_dropped": self.trials_dropped}
