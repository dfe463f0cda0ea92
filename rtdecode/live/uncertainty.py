"""Per-pixel uncertainty, live: the spread of an image-prior model's fold ensemble on every decoded frame,
and how well that spread predicts the error (its calibration against the stimulus stream).

An image-prior amortized model (rtdecode.decode.image_prior) keeps the K cross-fitting fold ridges it was
trained with (`image_prior.FOLD_KEYS`: rank-k linear maps sharing the live decoder's normalisation and
temporal basis). `LiveUncertainty.compute` runs the K of them on the decode stage's own activity window and
returns their per-pixel standard deviation (ddof 1, 0-255 scale like the decoded frame): the same number
as `PipelineDecoder.uncertainty_trial` gives offline for that window (`image_prior.spread`), in numpy
(no torch in the live process) into preallocated buffers. The live loop (rtdecode.live.session) computes
it after the decoded frame is published, the triggers have it and the activity is out, and publishes it
as the 'uncertainty' topic with the decoded frame's fields (trial, frame, target_t, frameNumberAcq, t).

`SpreadCalibration` accumulates, over the decoded frames whose target stimulus image is known, the
Pearson correlation between the spread and |decoded - stimulus| (running sums: every frame counts, in
constant memory) and keeps a bounded sample of frames for `rtdecode.metrics.uncertainty_calibration`'s
binned table at the end of the session. Frames are scored as `metrics.score` scores them: frames of a
trial from `metrics.SKIP_FRAMES` on, the full frame (or `mask`).
"""

from __future__ import annotations

import logging

import numpy as np

from rtdecode import metrics
from rtdecode.errors import ModelError

log = logging.getLogger(__name__)

PREFIX = "amortized."
# rtdecode.decode.image_prior.FOLD_KEYS (not imported: that module imports torch; a test checks they agree)
FOLD_KEYS = ("amortized.fold_w_in", "amortized.fold_w_out")  # (K, N*nb, rank), (K, rank, H*W)


class LiveUncertainty:
    """The K fold ridges of an image-prior model, evaluated on one activity window at a time.

    window (N, bins) float32 raw activity, oldest bin first (the decode stage's input) -> (H, W) float32
    per-pixel standard deviation of the K folds' linear frames of the decoded frame, 0-255 scale.
    Cost per frame: one (N*nb) x (K*rank) mat-vec and K rank x (H*W) ones (benchmarks/results/
    live_uncertainty_latency.json)."""

    def __init__(self, act_mean: np.ndarray, act_std: np.ndarray, basis: np.ndarray, act_scale: float,
                 back: int, fold_w_in: np.ndarray, fold_w_out: np.ndarray, frame_shape: tuple[int, int]):
        K, d, rank = fold_w_in.shape
        self.k, self.rank, self.frame_shape = K, rank, tuple(int(s) for s in frame_shape)
        self.n, self.ridge_bins, self.back = len(act_mean), basis.shape[0], int(back)
        self.act_mean = np.asarray(act_mean, np.float32).reshape(-1, 1)
        self.inv_std = (1.0 / np.asarray(act_std, np.float32)).reshape(-1, 1)
        self.basis = np.ascontiguousarray(basis, np.float32)
        self.act_scale = float(act_scale)  # > 0: log1p(x / scale) compression first (as the network)
        # (N*nb, K*rank): one mat-vec gives every fold's rank-k code
        self.w_in = np.ascontiguousarray(np.moveaxis(np.asarray(fold_w_in, np.float32), 0, 1).reshape(d, K * rank))
        self.w_out = np.ascontiguousarray(fold_w_out, np.float32)  # (K, rank, H*W)
        self._x = np.empty((self.n, self.ridge_bins), np.float32)
        self._f = np.empty((self.n, basis.shape[1]), np.float32)
        self._h = np.empty(K * rank, np.float32)
        self._frames = np.empty((K, 1, self.w_out.shape[2]), np.float32)
        self.out = np.empty(self.frame_shape, np.float32)

    @classmethod
    def from_model(cls, card, arrays: dict) -> "LiveUncertainty | None":
        """The fold ensemble of a model directory's (card, weights.npz arrays), or None when the model has
        none (ridge, the residual kinds, image-prior models fitted before the folds were kept).
        ModelError when the arrays disagree with each other or with the card (fit the model again)."""
        a = card.amortized or {}
        if a.get("kind") != "image_prior" or not all(k in arrays for k in FOLD_KEYS):
            return None
        w_in, w_out = (np.asarray(arrays[k]) for k in FOLD_KEYS)
        need = [PREFIX + k for k in ("act_mean", "act_std", "basis", "act_scale")]
        missing = [k for k in need if k not in arrays]
        if missing:
            raise ModelError(f"weights.npz has the fold ensemble but not {', '.join(missing)}; fit the model again")
        mean, std, basis = (np.asarray(arrays[k]) for k in need[:3])
        H, W = card.frame_shape
        n, (rb, nb) = card.neurons, basis.shape
        back = int(a.get("back", 4))
        ok = (w_in.ndim == 3 and w_out.ndim == 3 and len(w_in) == len(w_out) and len(w_in) >= 2
              and w_in.shape[1] == n * nb and w_out.shape[1] == w_in.shape[2] and w_out.shape[2] == H * W
              and mean.size == n and std.size == n and rb + back + int(a.get("fwd", 4)) == card.window.bins)
        if not ok:
            raise ModelError(f"weights.npz fold ensemble {w_in.shape} / {w_out.shape} does not match the model "
                             f"({n} neurons x {nb} basis functions, {H}x{W} frames, window {card.window.bins} bins); "
                             "fit the model again")
        return cls(mean, std, basis, float(np.asarray(arrays[need[3]]).ravel()[0]), back, w_in, w_out, (H, W))

    def compute(self, window: np.ndarray) -> np.ndarray:
        """(N, bins) window -> (H, W) float32 spread (the returned array is overwritten by the next call)."""
        x = self._x
        x[...] = window[:, self.back:self.back + self.ridge_bins]
        if self.act_scale > 0:
            np.maximum(x, 0.0, out=x)
            x *= 1.0 / self.act_scale
            np.log1p(x, out=x)
        x -= self.act_mean
        x *= self.inv_std
        np.matmul(x, self.basis, out=self._f)  # (N, nb), flattened neuron-major as the ridge's features
        np.matmul(self._f.reshape(-1), self.w_in, out=self._h)
        np.matmul(self._h.reshape(self.k, 1, self.rank), self.w_out, out=self._frames)
        s = self._frames[:, 0].std(axis=0, ddof=1)
        self.out[...] = s.reshape(self.frame_shape)
        return self.out


class SpreadCalibration:
    """Does the live spread predict the live error? Add (spread, decoded, stimulus) per decoded frame
    whose target image is known; `summary()` gives the Pearson correlation of the spread with
    |decoded - stimulus| over every scored pixel of every scored frame (running float64 sums), the mean
    spread and mean |error| and their ratio (as rtdecode.metrics.uncertainty_calibration defines them);
    `summary(bins=True)` adds that function's equal-count bins over a uniform sample of at most
    `sample` frames (all frames when fewer). Frames whose target is one of a trial's first `skip`
    frames are not scored (metrics.SKIP_FRAMES, as pixel_corr). mask: (H, W) bool, None = full frame."""

    def __init__(self, mask: np.ndarray | None = None, skip: int = metrics.SKIP_FRAMES, sample: int = 300,
                 seed: int = 0):
        self.mask = None if mask is None else np.asarray(mask, bool)
        self.skip, self.cap = skip, sample
        self.sums = np.zeros(5)  # s, e, s^2, e^2, s*e
        self.pixels = 0
        self.frames = 0
        self.kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._rng = np.random.default_rng(seed)

    def add(self, spread: np.ndarray, decoded: np.ndarray, stimulus: np.ndarray, frame: int) -> bool:
        """Score one frame (its target is stimulus frame `frame` of its trial); False if not scored."""
        if frame < self.skip or stimulus.shape != spread.shape or decoded.shape != spread.shape:
            return False
        m = self.mask
        s = np.asarray(spread, np.float64) if m is None else np.asarray(spread, np.float64)[m]
        e = np.abs(np.asarray(decoded, np.float64) - stimulus)
        e = e if m is None else e[m]
        self.sums += (s.sum(), e.sum(), np.dot(s.ravel(), s.ravel()), np.dot(e.ravel(), e.ravel()),
                      np.dot(s.ravel(), e.ravel()))
        self.pixels += s.size
        self.frames += 1
        item = (np.array(spread, np.float32), np.array(decoded, np.float32), np.array(stimulus, np.float32))
        if len(self.kept) < self.cap:  # reservoir sampling: a uniform sample of every frame so far
            self.kept.append(item)
        else:
            j = int(self._rng.integers(0, self.frames))
            if j < self.cap:
                self.kept[j] = item
        return True

    def summary(self, bins: bool = False) -> dict:
        out = {"frames": self.frames, "mask": "full frame" if self.mask is None else "mask",
               "skip_frames": self.skip}
        if not self.pixels:
            return out | {"corr_spread_abs_error": None}
        n = self.pixels
        ms, me = self.sums[0] / n, self.sums[1] / n
        vs, ve = self.sums[2] / n - ms * ms, self.sums[3] / n - me * me
        cov = self.sums[4] / n - ms * me
        corr = float(cov / np.sqrt(vs * ve)) if vs > 0 and ve > 0 else None
        out |= {"corr_spread_abs_error": corr, "mean_spread": float(ms), "mean_abs_error": float(me),
                "abs_error_over_spread": float(me / ms) if ms > 0 else None}
        if bins and self.kept:
            sampled = metrics.uncertainty_calibration([(s[None], r[None], t[None]) for s, r, t in self.kept],
                                                      self.mask, skip=0)
            out |= {"bins": sampled["bins"], "sample_frames": len(self.kept),
                    "sample_corr_spread_abs_error": sampled["corr_spread_abs_error"]}
        return out
