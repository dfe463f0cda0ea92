"""Decoder v0: ridge regression from a window of activity to the frame.

Frame f is decoded from activity bins f+lag_min ... f+lag_min+bins-1 (responses lag the stimulus).
To keep the problem small at Sensorium scale (~8,000 neurons), each neuron's window is projected on
a few smooth temporal basis functions, so the features are neurons x basis (not neurons x lags), and
the normal equations are accumulated trial by trial: memory is features^2 + features x pixels,
whatever the recording length (8,000 neurons x 2 basis functions: a 2 GB Gram matrix).

Activity is compressed before the z-score, x -> log1p(max(x, 0) / act_scale) with act_scale =
COMPRESS x the mean activity of the training trials (one number, so the transform does not depend
on the recording's units): deconvolved calcium is heavy-tailed (on the realistic rig the largest
value of a trial is ~50x the mean: benchmarks/results/ridge_explore.json "responses"), and a few
large events otherwise dominate the z-scores. On the realistic rig, `rtdecode fit` then
`reconstruct` gained +0.010 to +0.017 pixel_corr at 1,000 neurons and +0.022 to +0.035 at 4,000, on
each of 3 seeds (benchmarks/results/ridge_compress.json, ridge_compress_4000.json; at 2,000 one seed
lost 0.016 to a different penalty choice). act_scale 0 means no compression (models fitted before).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import scipy.linalg

from rtdecode import metrics
from rtdecode.decode.card import ModelCard
from rtdecode.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

COMPRESS = 6.0  # act_scale in units of the training mean activity (2.5-15 scored alike: ridge_explore.json)
# `rtdecode fit --method ridge`'s windows (lag_min, bins), one chosen on the validation trials with the
# penalty: bins f .. f+7 for frame f, or f-4 .. f+7. The 4 bins before the frame carry the earlier
# frames' responses, which tell about frame f because movie frames are correlated in time; both end at
# f+7, so live decoding waits no longer either way (benchmarks/results/ridge_modality.json).
WINDOWS = ((0, 8), (-4, 12))
ALPHAS = (1e-2, 1e-1, 1.0, 10.0, 100.0)  # times the mean diagonal of the Gram matrix
# Shares of the decoded frame brightness (its mean over the frame, less the training mean) that may be
# kept; one is chosen on the validation trials with the penalty (`shrink_brightness`).
BRIGHTNESS_KEEP = (0.0, 0.25, 0.5, 0.75, 1.0)
# Folds of the out-of-fold brightness choice (brightness_choice="oof", as crossfit.py). An option, not the
# default: it gained on neither simulator's choosing seeds (benchmarks/results/ridge_oof_choice.json).
OOF_FOLDS = 5
# OpenBLAS's Cholesky (numpy's and scipy's wheels) segfaults on this machine at 24,000 x 24,000 and
# works at 16,000 (observed crashes, not a saved result); the temporal basis shrinks so the features stay within this.
MAX_FEATURES = 16_000


def default_n_basis(n_neurons: int) -> int:
    """3 temporal basis functions, fewer when neurons x basis would exceed MAX_FEATURES."""
    if n_neurons > MAX_FEATURES:
        raise ConfigError(f"ridge handles at most {MAX_FEATURES} neurons ({n_neurons} given); "
                          "use --neurons-subset")
    return max(1, min(3, MAX_FEATURES // n_neurons))


def temporal_basis(bins: int, n_basis: int) -> np.ndarray:
    """(bins, n_basis) Gaussian bumps evenly spaced over the window."""
    centres = np.linspace(0, bins - 1, n_basis)
    width = max((bins - 1) / max(n_basis - 1, 1), 1.0) * 0.6
    j = np.arange(bins)[:, None]
    return np.exp(-0.5 * ((j - centres[None, :]) / width) ** 2).astype(np.float32)


def compress(act: np.ndarray, act_scale: float) -> np.ndarray:
    """log1p(max(x, 0) / act_scale) as float32 (act_scale 0: x unchanged, as float32)."""
    if not act_scale:
        return np.asarray(act, np.float32)
    return np.log1p(np.maximum(act, 0) * np.float32(1.0 / act_scale)).astype(np.float32)


def raw_fill(act_mean: np.ndarray, act_scale: float) -> np.ndarray:
    """(N,) raw activity whose compressed value is act_mean: what fills a window's bins before the
    first frame (their z-score is then 0, as in training, where bins outside a trial count as 0)."""
    if not act_scale:
        return np.asarray(act_mean, np.float32)
    return (np.float32(act_scale) * np.expm1(act_mean)).astype(np.float32)


def window_fill(arrays: dict[str, np.ndarray], card: ModelCard, prefix: str = "") -> np.ndarray:
    """(N,) raw activity that fills the live activity ring before the first frame: the `raw_fill` of
    the ridge weights under `prefix` (method ridge's live window fill, rtdecode.decode.methods), zeros
    without them."""
    if prefix + "act_mean" not in arrays:
        return np.zeros(card.neurons, np.float32)
    scale = arrays.get(prefix + "act_scale")
    return raw_fill(arrays[prefix + "act_mean"].reshape(-1), 0.0 if scale is None else float(scale.reshape(-1)[0]))


def amortized_window_fill(arrays: dict[str, np.ndarray], card: ModelCard) -> np.ndarray:
    """Method amortized's live window fill (rtdecode.decode.methods): a network of a kind that starts
    as ridge (`ridge_start`) is filled as ridge's, from its `amortized.` weights; zeros otherwise (the
    stand-alone network). Here, not in amortized.py: the live path reads it without torch."""
    from rtdecode.decode.methods import AMORTIZED_KINDS

    kind = AMORTIZED_KINDS.get((card.amortized or {}).get("kind"))
    if kind is None or not kind.ridge_start:
        return np.zeros(card.neurons, np.float32)
    return window_fill(arrays, card, prefix="amortized.")


def window_features(act: np.ndarray, basis: np.ndarray, lag_min: int) -> np.ndarray:
    """(T, N) z-scored activity -> (T, N * n_basis) features of every frame; bins outside the trial
    count as 0 (the mean)."""
    T, N = act.shape
    bins, nb = basis.shape
    out = np.zeros((T, N, nb), np.float32)
    for j in range(bins):
        lag = lag_min + j
        lo, hi = max(0, -lag), min(T, T - lag)
        if hi <= lo:
            continue
        shifted = act[lo + lag : hi + lag]
        for b in range(nb):
            out[lo:hi, :, b] += basis[j, b] * shifted
    return out.reshape(T, N * nb)


@dataclass
class RidgeDecoder:
    """Weights of a fitted decoder. Shapes: act_mean, act_std (N,); basis (bins, nb);
    weights (N*nb, H*W), or with `w_out` the low-rank factors weights (N*nb, k) @ w_out (k, H*W);
    pixel_mean (H*W,). act_mean, act_std are of the compressed activity (`compress`, act_scale)."""

    act_mean: np.ndarray
    act_std: np.ndarray
    basis: np.ndarray
    weights: np.ndarray
    pixel_mean: np.ndarray
    frame_shape: tuple[int, int]
    lag_min: int
    w_out: np.ndarray | None = None
    act_scale: float = 0.0

    def __post_init__(self):
        # Scratch for predict_window, so the live path allocates nothing per frame.
        k = self.weights.shape[1]
        self._mid = np.empty(k, np.float32) if self.w_out is not None else None
        self._z = np.empty((len(self.act_mean), self.basis.shape[0]), np.float32)
        self._feats = np.empty((len(self.act_mean), self.basis.shape[1]), np.float32)
        self._scale = (1.0 / self.act_std).astype(np.float32)[:, None]

    def predict_trial(self, responses: np.ndarray) -> np.ndarray:
        """(N, T) activity of one trial -> (T, H, W) decoded frames."""
        z = (compress(responses, self.act_scale).T - self.act_mean) / self.act_std
        x = window_features(z.astype(np.float32), self.basis, self.lag_min) @ self.weights
        if self.w_out is not None:
            x = x @ self.w_out
        return (x + self.pixel_mean).reshape((-1,) + self.frame_shape)

    def predict_window(self, window: np.ndarray, out: np.ndarray) -> None:
        """Live: (N, bins) window, oldest bin first -> `out` (H, W), written in place."""
        z = self._z
        if self.act_scale:
            np.maximum(window, 0, out=z)
            z *= np.float32(1.0 / self.act_scale)
            np.log1p(z, out=z)
            z -= self.act_mean[:, None]
        else:
            np.subtract(window, self.act_mean[:, None], out=z)
        z *= self._scale
        np.matmul(z, self.basis, out=self._feats)
        feats = self._feats.reshape(-1)
        if self.w_out is None:
            np.matmul(feats, self.weights, out=out.reshape(-1))
        else:  # rank k: two small products instead of one (N*nb x H*W) read per frame
            np.matmul(feats, self.weights, out=self._mid)
            np.matmul(self._mid, self.w_out, out=out.reshape(-1))
        out.reshape(-1)[:] += self.pixel_mean

    def fill(self) -> np.ndarray:
        """(N,) raw activity for the bins of a window before the first frame (`raw_fill`)."""
        return raw_fill(self.act_mean, self.act_scale)

    def as_torch_module(self):
        """This decoder as a torch module, (1, N, bins) float32 window -> (1, H, W) frame: the same
        operations as `predict_window` (for ONNX export and the torch backend; imports torch)."""
        from rtdecode.decode.ridge_torch import ridge_module  # torch only when asked for

        return ridge_module(self)

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"act_mean": self.act_mean, "act_std": self.act_std, "basis": self.basis,
               "weights": self.weights, "pixel_mean": self.pixel_mean}
        if self.w_out is not None:
            out["w_out"] = self.w_out
        if self.act_scale:
            out["act_scale"] = np.array([self.act_scale], np.float32)
        return out

    @classmethod
    def from_arrays(cls, card: ModelCard, a: dict[str, np.ndarray]) -> "RidgeDecoder":
        """Rebuild from a model directory, checking every shape against the card."""
        n, bins = card.in_shape
        h, w = card.frame_shape
        expect = {"act_mean": (n,), "act_std": (n,), "pixel_mean": (h * w,)}
        for key, shape in expect.items():
            if key not in a:
                raise ModelError(f"weights.npz has no '{key}'")
            if a[key].shape != shape:
                raise ModelError(f"weights.npz '{key}' has shape {a[key].shape}, the card says {shape}")
        if a["basis"].shape[0] != bins:
            raise ModelError(f"weights.npz 'basis' covers {a['basis'].shape[0]} bins, the card's window has {bins}")
        nb = a["basis"].shape[1]
        w_out = a.get("w_out")
        k = h * w if w_out is None else w_out.shape[0]
        if a["weights"].shape != (n * nb, k):
            raise ModelError(f"weights.npz 'weights' has shape {a['weights'].shape}, expected {(n * nb, k)}")
        if w_out is not None and w_out.shape != (k, h * w):
            raise ModelError(f"weights.npz 'w_out' has shape {w_out.shape}, expected {(k, h * w)}")
        scale = a.get("act_scale")
        if scale is not None and (scale.shape != (1,) or not np.isfinite(scale[0]) or scale[0] < 0):
            raise ModelError(f"weights.npz 'act_scale' must be one finite number >= 0, got {scale!r:.60}")
        return cls(a["act_mean"], a["act_std"], a["basis"], a["weights"], a["pixel_mean"], (h, w),
                   card.window.lag_min, w_out, 0.0 if scale is None else float(scale[0]))


def random_decoder(n: int, bins: int = 8, frame_shape=(36, 64), rank: int | None = 128, lag_min: int = 0,
                   seed: int = 0, act_scale: float = 1.0) -> RidgeDecoder:
    """A decoder with random weights of exactly the shapes and operations `fit` gives (basis, rank,
    compression: act_scale > 0), for benchmarks and tests where speed, not quality, is measured."""
    rng = np.random.default_rng(seed)
    h, w = frame_shape
    nb = default_n_basis(n)
    d = n * nb
    k = h * w if rank is None else min(rank, d, h * w)
    weights = (rng.standard_normal((d, k), np.float32) / np.float32(np.sqrt(d)))
    w_out = None if rank is None else rng.standard_normal((k, h * w), np.float32) / np.float32(np.sqrt(k))
    return RidgeDecoder(rng.uniform(0, 1, n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32),
                        temporal_basis(bins, nb), weights, rng.uniform(0, 255, h * w).astype(np.float32),
                        (h, w), lag_min, w_out, act_scale)


def brightness_vector(frame_shape) -> np.ndarray:
    """(H*W,) weights whose dot product with a frame is its mean brightness (over the whole frame:
    the mean over the evaluation mask instead lost 0.012 / gained 0.032 / 0.024 on the oracle trials
    of 3 realistic-rig populations at 1,000 neurons, against +0.005 / +0.068 / +0.060 for the whole
    frame, benchmarks/results/ridge_brightness_mask_dc.json and ridge_brightness.json)."""
    h, w = frame_shape
    return np.full(h * w, 1.0 / (h * w))


def shrink_brightness(w: np.ndarray, m: np.ndarray, keep: float) -> np.ndarray:
    """Output weights (k, H*W) whose frames keep `keep` of their brightness: each decoded frame y
    (less the training pixel mean) becomes y - (1 - keep) (y . m) on every pixel. A linear map of the
    output, folded into the weights, so the live path does the same work.

    Why: ridge shares one penalty between the frame's brightness (one direction of the output) and
    its spatial pattern, and its brightness was the less reliable part on every realistic-rig
    population measured: on held-out photographs its frame-by-frame correlation with the true
    brightness was 0.12-0.43, with a spread 60-94 % of the truth's. Chosen on validation, the share
    kept was 0-0.25 on all 9 fits and gained +0.044 / +0.060 / +0.049 pixel_corr at 1,000 / 2,000 /
    4,000 neurons (3 seeds, each gain positive: +0.005 to +0.084; benchmarks/results/ridge_brightness.json)."""
    if keep == 1.0:
        return w
    return (w - (1.0 - keep) * (w @ m)[:, None].astype(w.dtype)).astype(np.float32)


def truncate_weights(w: np.ndarray, rank: int | None, keep: float, m: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Full weights (features, H*W) -> (weights, w_out): the top-`rank` singular factors (w_out None
    when rank is None or not smaller), with `keep` of the brightness folded into the output side."""
    if rank is not None and rank < min(w.shape):
        u, sv, vt = np.linalg.svd(w, full_matrices=False)
        return ((u[:, :rank] * sv[:rank]).astype(np.float32),
                np.ascontiguousarray(shrink_brightness(vt[:rank].astype(np.float32), m, keep)))
    return shrink_brightness(w, m, keep), None


def _solve(G: np.ndarray, C: np.ndarray, penalty: float, keep: bool) -> np.ndarray:
    """(G + penalty I)^-1 C by Cholesky. With keep=False, G is overwritten: at Sensorium scale
    (16,000 features) each copy of G is 2 GB, so the final solve makes none."""
    A = G.copy() if keep else G
    A[np.diag_indices_from(A)] += penalty
    factor = scipy.linalg.cho_factor(A, overwrite_a=True, check_finite=False)
    return scipy.linalg.cho_solve(factor, C, check_finite=False).astype(np.float32)


TrialSource = Callable[[], Iterable[tuple[np.ndarray, np.ndarray]]]


def fit(trials: TrialSource, val_trials: TrialSource, *, lag_min: int = 0, bins: int = 8,
        n_basis: int | None = None, alphas=ALPHAS, rank: int | None = 128,
        progress: Callable[[str], None] | None = None, keep_fit_only: bool = False,
        refine: bool = True, compress_scale=COMPRESS, mask: np.ndarray | None = None,
        brightness_keep=BRIGHTNESS_KEEP, windows=None, brightness_choice: str = "validation",
        oof_folds: int = OOF_FOLDS) -> tuple[RidgeDecoder, dict]:
    """Fit on `trials` and choose the ridge penalty on `val_trials`, then refit on both.

    Each source is a callable returning an iterable of (responses (N, T), video (T, H, W)) so the data
    is streamed, never held all at once. The penalty and the share of brightness kept
    (`shrink_brightness`, grid `brightness_keep`; (1.0,): all of it) are chosen together by the
    pixel correlation (docs/design.md 3.3: over `mask`, the dataset's evaluation mask, or the full frame
    when None) on the validation trials, on the grid `alphas` and then (`refine`) half a decade
    either side of the best. `n_basis` None picks `default_n_basis`. `rank` truncates the weights
    to their top singular vectors (None: full rank): the live product then reads (features + pixels)
    x rank numbers per frame instead of features x pixels (at 1,000 neurons rank 128 kept the
    held-out pixel_corr: 0.779 vs 0.773 full, and is ~10x less work). Returns the decoder and a dict
    of training diagnostics; with `keep_fit_only`, info['fit_only_decoder'] is the decoder fitted on
    `trials` alone at the chosen penalty (same rank), for models that validate on `val_trials` later.
    `compress_scale`: act_scale in units of the mean training activity (`compress`; None or 0: none),
    or a sequence of such values: each gets its own penalty and brightness search and the one whose
    best validation score is highest is kept (info['compress']). `windows`: None (the window
    `lag_min`, `bins`) or a sequence of (lag_min, bins) offered the same way (info['window']); with
    more than one candidate (windows x compressions) every candidate's best validation score, penalty
    and brightness share are in info['choice_search'].
    `brightness_choice`: "validation" (the share chosen with the penalty on `val_trials`) or "oof": the
    window and penalty are chosen as before, then the share is chosen again on out-of-fold
    reconstructions of every trial (`trials` and `val_trials`, `oof_folds` interleaved folds, each
    solved at the chosen penalty on the other folds: `_oof_brightness`); info['brightness_oof'] has
    each share's score there and info['brightness_keep_validation'] the share the validation chose.
    The live decoder is fitted on every trial either way.
    """
    say = progress or (lambda s: None)
    scales = tuple(compress_scale) if isinstance(compress_scale, (tuple, list)) else (compress_scale,)
    scales = tuple(float(c or 0.0) for c in scales)
    if not scales or not all(np.isfinite(c) and c >= 0 for c in scales):
        raise ConfigError(f"compress_scale values must be finite numbers >= 0, got {list(scales)}")
    mean = None
    if any(scales):
        # Pass 0: the mean activity, which sets the compression's scale.
        total, count = 0.0, 0
        for src in (trials, val_trials):
            for resp, _ in src():
                total += float(np.sum(resp, dtype=np.float64)); count += resp.size
        if count == 0:
            raise ModelError("no training trials")
        mean = total / count
    keeps = tuple(float(k) for k in brightness_keep) or (1.0,)
    if not all(0.0 <= k <= 1.0 for k in keeps):
        raise ConfigError(f"brightness_keep values must lie in [0, 1], got {list(keeps)}")
    if brightness_choice not in ("validation", "oof"):
        raise ConfigError(f"brightness_choice must be 'validation' or 'oof', got {brightness_choice!r}")
    windows = ((lag_min, bins),) if windows is None else tuple((int(lm), int(b)) for lm, b in windows)
    if not windows or not all(b >= 1 for _, b in windows):
        raise ConfigError(f"windows must be (lag_min, bins >= 1) pairs, got {list(windows)}")
    candidates = [(w, cs) for w in windows for cs in scales]
    val = list(val_trials())
    winner, search = None, []
    for (lm, nbins), cs in candidates:
        if len(candidates) > 1:
            say(f"window {lm}..{lm + nbins - 1}, activity compression {cs:g}")
        act_scale = float(cs * mean) if cs and mean > 0 else 0.0
        cand = _search(trials, val, act_scale, lag_min=lm, bins=nbins, n_basis=n_basis, alphas=alphas,
                       refine=refine, mask=mask, keeps=keeps, keep_fit_only=keep_fit_only, say=say,
                       keep_normal_equations=(len(candidates) == 1))
        cand.update(compress=cs, lag_min=lm)
        search.append({"lag_min": lm, "bins": nbins, "compress": cs, "act_scale": act_scale,
                       "val_pixel_corr": cand["score"], "alpha": cand["alpha"], "brightness_keep": cand["keep"]})
        if winner is None or cand["score"] > winner["score"]:
            winner = cand
        del cand
    c = winner
    lag_min = c["lag_min"]
    act_mean, act_std, basis, pixel_mean, frame_shape = c["act_mean"], c["act_std"], c["basis"], c["pixel_mean"], c["frame_shape"]
    act_scale, alpha, keep = c["act_scale"], c["alpha"], c["keep"]
    m = brightness_vector(frame_shape)

    say("refitting on all training trials")
    if c.get("G") is not None:
        G, C = c.pop("G"), c.pop("C")
    else:
        G, C = _normal_equations(trials, act_scale, act_mean, act_std, pixel_mean, basis, lag_min)
    G_va, C_va = _normal_equations(lambda: iter(val), act_scale, act_mean, act_std, pixel_mean, basis, lag_min)
    G += G_va
    C += C_va
    del G_va
    keep_val, oof_scores = keep, None
    if brightness_choice == "oof" and len(keeps) > 1:
        say(f"brightness share on out-of-fold reconstructions ({oof_folds} folds)")
        every = lambda: itertools.chain(trials(), iter(val))
        oof_scores = _oof_brightness(every, c["trials"], G, C, alpha, keeps, oof_folds, rank, mask, act_scale, act_mean, act_std,
                                     pixel_mean, basis, lag_min, frame_shape)
        keep = max(keeps, key=lambda k: (oof_scores[str(k)], k))
    w = _solve(G, C, alpha * c["scale"], keep=False)
    del G  # frees the Gram matrix

    if rank is not None:
        say(f"rank-{rank} truncation")
    w, w_out = truncate_weights(w, rank, keep, m)
    dec = RidgeDecoder(act_mean, act_std, basis, w, pixel_mean, frame_shape, lag_min, w_out, act_scale)
    info = {"alpha": alpha, "brightness_keep": keep, "act_scale": act_scale, "compress": c["compress"],
            "window": [lag_min, int(basis.shape[0])],
            "alpha_search": c["results"], "features": int(C.shape[0]), "frames": int(c["frames"]),
            "rank": None if w_out is None else int(rank), "brightness_choice": brightness_choice}
    if oof_scores is not None:
        info.update(brightness_keep_validation=keep_val, brightness_oof=oof_scores, oof_folds=int(oof_folds))
    if len(candidates) > 1:
        info["choice_search"] = search
    if keep_fit_only:
        wf, wf_out = truncate_weights(c["w_fit"], rank, keep, m)
        info["fit_only_decoder"] = RidgeDecoder(act_mean, act_std, basis, wf, pixel_mean, frame_shape, lag_min, wf_out,
                                                act_scale)
    log.info("ridge: compression %g, penalty %g x mean Gram diagonal, %d features, brightness kept %g",
             c["compress"], alpha, C.shape[0], keep)
    return dec, info


def _normal_equations(src, act_scale, act_mean, act_std, pixel_mean, basis, lag_min):
    """(X'X, X'Y) of a trial source, float64."""
    G = C = None
    for resp, video in src():
        x = window_features(((compress(resp, act_scale).T - act_mean) / act_std).astype(np.float32), basis, lag_min)
        y = video.reshape(video.shape[0], -1) - pixel_mean
        if G is None:
            G = np.zeros((x.shape[1], x.shape[1])); C = np.zeros((x.shape[1], y.shape[1]))
        G += x.T @ x; C += x.T @ y
    return G, C


def _oof_brightness(every, n, G, C, alpha, keeps, folds, rank, mask, act_scale, act_mean, act_std, pixel_mean, basis,
                    lag_min, frame_shape) -> dict[str, float]:
    """Pixel correlation (over `mask`) of the out-of-fold reconstructions of every trial of the source
    `every` (`n` trials) at each brightness share in `keeps`: trial i is in fold i mod `folds`; each fold is decoded
    by the ridge solved on the other folds ((G - G_k, C - C_k), the same normalisation, penalty `alpha`
    in units of its own mean Gram diagonal, and rank, as crossfit.out_of_fold). The shrinkage is a
    linear map of the output, so every share is scored from one set of reconstructions. G, C: the
    normal equations of all of `every` (left unchanged). One pass over the data per fold."""
    if not 2 <= folds <= n:  # as crossfit.fold_of (which imports this module)
        raise ConfigError(f"the out-of-fold choice needs between 2 and {n} folds (one per trial at most), got {folds}")
    which = np.arange(n) % folds  # interleaved, as crossfit.fold_of
    m = brightness_vector(frame_shape)
    pairs = []
    for k in range(folds):
        xs, ys = [], []
        Gk = np.zeros_like(G); Ck = np.zeros_like(C)
        for i, (resp, video) in enumerate(every()):
            if which[i] != k:
                continue
            x = window_features(((compress(resp, act_scale).T - act_mean) / act_std).astype(np.float32), basis, lag_min)
            Gk += x.T @ x; Ck += x.T @ (video.reshape(video.shape[0], -1) - pixel_mean)
            xs.append(x); ys.append(video)
        A = G - Gk
        del Gk
        w = _solve(A, C - Ck, alpha * float(np.mean(np.diag(A))), keep=False)
        del A, Ck
        w, w_out = truncate_weights(w, rank, 1.0, m)
        for x, video in zip(xs, ys):
            p = x @ w
            pairs.append((p if w_out is None else p @ w_out, video))
    out = {}
    for keep in keeps:
        preds = []
        for p, video in pairs:
            q = p - np.float32(1.0 - keep) * (p @ m.astype(np.float32))[:, None]
            preds.append(((q + pixel_mean).reshape(video.shape), video))
        out[str(keep)] = float(metrics.score(preds, mask)["pixel_corr"])
    return out


def _search(trials, val, act_scale, *, lag_min, bins, n_basis, alphas, refine, mask, keeps, keep_fit_only, say,
            keep_normal_equations):
    """Normalisation statistics at `act_scale`, normal equations of `trials`, and the penalty and
    brightness search on the (already loaded) `val` trials. Returns a dict of all of it; its 'G' and
    'C' only with `keep_normal_equations` (they are 2 GB at Sensorium scale; `fit` recomputes them)."""
    # Pass 1: normalisation statistics.
    n_t, n_trials, s1, s2, pix = 0, 0, None, None, None
    for src in (trials, lambda: iter(val)):
        for resp, video in src():
            n_trials += 1
            resp = compress(resp, act_scale)
            if s1 is None:
                s1 = np.zeros(resp.shape[0]); s2 = np.zeros(resp.shape[0]); pix = np.zeros(video[0].size)
            s1 += resp.sum(1); s2 += (resp.astype(np.float64) ** 2).sum(1)
            pix += video.reshape(video.shape[0], -1).sum(0); n_t += resp.shape[1]
    if s1 is None:
        raise ModelError("no training trials")
    act_mean = (s1 / n_t).astype(np.float32)
    act_std = np.sqrt(np.maximum(s2 / n_t - act_mean.astype(np.float64) ** 2, 0)).astype(np.float32)
    act_std = np.maximum(act_std, 1e-3 * max(float(act_std.max()), 1e-6)).astype(np.float32)
    pixel_mean = (pix / n_t).astype(np.float32)
    basis = temporal_basis(bins, default_n_basis(len(act_mean)) if n_basis is None else n_basis)
    frame_shape = tuple(val[0][1].shape[1:]) if val else None

    say("accumulating normal equations")
    G, C = _normal_equations(trials, act_scale, act_mean, act_std, pixel_mean, basis, lag_min)
    if G is None or not val:
        raise ModelError("no training or no validation trials")
    scale = float(np.mean(np.diag(G)))
    results, best = [], None

    if mask is not None and np.asarray(mask).shape != tuple(frame_shape):
        raise ConfigError(f"evaluation mask of shape {np.asarray(mask).shape} does not fit frames of shape "
                          f"{tuple(frame_shape)}")
    m = brightness_vector(frame_shape)

    def try_alpha(a):
        nonlocal best
        say(f"ridge penalty {a:g}")
        w = _solve(G, C, a * scale, keep=True)
        dec = RidgeDecoder(act_mean, act_std, basis, w, pixel_mean, frame_shape, lag_min, None, act_scale)
        preds = [(dec.predict_trial(r), v) for r, v in val]
        dcs = [(p.reshape(len(p), -1) - pixel_mean) @ m for p, _ in preds]
        row = {"alpha": a, "val_pixel_corr_full": metrics.score(preds, None)["pixel_corr_full"], "val_pixel_corr": {}}
        for k in keeps:
            s = metrics.score([(p - np.float32(1.0 - k) * dc[:, None, None].astype(np.float32), v)
                               for (p, v), dc in zip(preds, dcs)], mask)["pixel_corr"]
            row["val_pixel_corr"][str(k)] = s
            if best is None or s > best[0]:
                best = (s, a, w if keep_fit_only else None, k)
        results.append(row)

    for a in alphas:
        try_alpha(a)
    if refine and len(alphas) > 1:
        # the grid steps by 10x; the half-decade neighbours of the best penalty are worth a try
        # (+0.006 pixel_corr at 1,000 neurons on the realistic rig, benchmarks/results/ridge_defaults.json)
        b = best[1]
        for a in (b / np.sqrt(10.0), b * np.sqrt(10.0)):
            try_alpha(float(a))
    out = {"score": best[0], "alpha": best[1], "w_fit": best[2], "keep": best[3], "results": results,
           "act_scale": act_scale, "act_mean": act_mean, "act_std": act_std, "pixel_mean": pixel_mean,
           "basis": basis, "frame_shape": frame_shape, "scale": scale, "frames": n_t, "trials": n_trials}
    if keep_normal_equations:
        out["G"], out["C"] = G, C
    return out
