"""Cross-fitted linear reconstructions: every calibration trial decoded by a ridge fitted without it.

A network that learns to correct the linear decoder must see the errors the linear decoder makes on
movies it was not fitted on; its in-sample reconstructions are too good and differently wrong. So
the trials are split into K folds; for each fold the ridge is solved on the other folds (same
normalisation, penalty, rank and brightness share as the decoder that runs live, which is fitted on
every trial) and reconstructs the fold's trials. The normal equations of all trials are accumulated
once and each fold's are subtracted, so K folds cost K solves and two passes over the data.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from rtdecode.decode import ridge
from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


def fold_of(n_trials: int, folds: int) -> np.ndarray:
    """(n_trials,) fold index of each trial, interleaved (trial i in fold i mod K)."""
    if not 2 <= folds <= n_trials:
        raise ConfigError(f"cross-fitting needs between 2 and {n_trials} folds (one per trial at most), got {folds}")
    return np.arange(n_trials) % folds


def out_of_fold(trials: list[tuple[np.ndarray, np.ndarray]], dec: ridge.RidgeDecoder, alpha: float, keep: float,
                folds: int, predict: Callable[[ridge.RidgeDecoder, np.ndarray], np.ndarray],
                progress: Callable[[str], None] | None = None,
                decoders: list | None = None) -> list[np.ndarray]:
    """trials: (responses (N, T), video (T, H, W)) of every calibration trial; `dec`: the ridge fitted on
    all of them (its normalisation, basis, lag, rank and compression are reused); `alpha`: its penalty in
    units of the mean Gram diagonal (ridge.fit's info['alpha']); `keep`: its brightness share.
    `predict(fold_decoder, responses)` gives what the caller needs of a trial (e.g.
    rtdecode.decode.image_prior.linear_frames). Returns predict's output for every trial, each from
    the fold decoder that did not see it. `decoders`, when given, receives the K fold decoders."""
    say = progress or (lambda s: None)
    which = fold_of(len(trials), folds)
    rank = None if dec.w_out is None else dec.weights.shape[1]
    m = ridge.brightness_vector(dec.frame_shape)

    def normal_equations(ids):
        G = C = None
        for i in ids:
            resp, video = trials[i]
            z = ((ridge.compress(resp, dec.act_scale).T - dec.act_mean) / dec.act_std).astype(np.float32)
            x = ridge.window_features(z, dec.basis, dec.lag_min)
            y = video.reshape(video.shape[0], -1) - dec.pixel_mean
            if G is None:
                G = np.zeros((x.shape[1], x.shape[1])); C = np.zeros((x.shape[1], y.shape[1]))
            G += x.T @ x; C += x.T @ y
        return G, C

    say("cross-fitting: normal equations of all trials")
    G, C = normal_equations(range(len(trials)))
    out: list[np.ndarray | None] = [None] * len(trials)
    for k in range(folds):
        ids = np.flatnonzero(which == k)
        say(f"cross-fitting: fold {k + 1}/{folds} ({len(ids)} trials held out)")
        Gk, Ck = normal_equations(ids)
        A = G - Gk
        del Gk
        scale = float(np.mean(np.diag(A)))
        w = ridge._solve(A, C - Ck, alpha * scale, keep=False)
        del A
        w, w_out = ridge.truncate_weights(w, rank, keep, m)
        fold_dec = ridge.RidgeDecoder(dec.act_mean, dec.act_std, dec.basis, w, dec.pixel_mean, dec.frame_shape,
                                      dec.lag_min, w_out, dec.act_scale)
        if decoders is not None:
            decoders.append(fold_dec)
        for i in ids:
            out[i] = predict(fold_dec, trials[i][0])
    return out
