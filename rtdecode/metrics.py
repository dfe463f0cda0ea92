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
    per_frame = [pearson(r[i][m], t[i][m]) for i in range(r.shape[0])]
    return {
        "pixel_corr": pearson(r[:, m], t[:, m]),
        "frame_corr": float(np.nanmean(per_frame)),
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
