"""Synthetic (linear frames, true movie) pairs for pre-training the image prior's U-Net (issue #24 item 3).

    procedural movies (rtdecode.stimuli.procedural: dead leaves under eye movements; no photographs)
      -> the dynamic encoder's mean rate (rtdecode.decode.encoder; behaviour of a random calibration trial)
      -> plus noise fitted to the calibration residuals (`NOISE`, below)
      -> the live ridge decoder (`image_prior.linear_frames`) -> (linear frames, movie) pairs

Noise models (activity and residuals in the dataset's units, (T, N) per trial):
  * "bootstrap": activity = max(rate + residual, 0), the residual = a calibration trial's recorded
    responses minus the encoder's prediction of that trial (the same trial whose behaviour drives
    the rate), aligned in time (tiled when the movie is longer). It keeps the noise's cross-neuron
    and temporal correlations and its calcium / spike scale.
  * "gaussian": activity = max(rate + N(0, s_n^2), 0), s_n each neuron's residual standard deviation.
`activity_stats` compares per-neuron mean, sd and fraction of zeros against the calibration's;
`rtdecode.decode.synthetic.NOISE` is the model the benchmark picked
(benchmarks/results/image_prior_synth.json, noise_check).

`pretrain` trains the U-Net on such pairs (called by `image_prior.train` when it is handed
`pretrain_pairs`, before its usual training on the out-of-fold calibration pairs).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)

NOISE = "bootstrap"  # the default noise model (see the module doc)
NOISES = ("bootstrap", "gaussian")


def encoder_rate(encoders: list, video: np.ndarray, behaviour: np.ndarray) -> np.ndarray:
    """(T, H, W) 0-255 video + (T, 4) behaviour -> (T, N) float32 mean rate of the encoder ensemble."""
    from rtdecode.decode import encoder as enc

    v = torch.from_numpy(enc.normalise_video(np.asarray(video, np.float32)))
    b = torch.from_numpy(np.asarray(behaviour, np.float32))
    return torch.stack([enc.predict_trial(e, v, b) for e in encoders]).mean(0).numpy().astype(np.float32)


def residuals(encoders: list, trials: list) -> list[np.ndarray]:
    """trials: (responses (N, T), video (T, H, W), behaviour (T, 4)) -> per trial (T, N) float32
    recorded minus predicted activity."""
    return [(np.asarray(r, np.float32).T - encoder_rate(encoders, v, b)).astype(np.float32) for r, v, b in trials]


def _fit_len(a: np.ndarray, T: int) -> np.ndarray:
    """(T0, ...) -> (T, ...): truncated or tiled along time."""
    return a[:T] if len(a) >= T else np.resize(a, (T,) + a.shape[1:])


def synth_activity(encoders: list, movie: np.ndarray, trials: list, resid: list[np.ndarray],
                   rng: np.random.Generator, noise: str = NOISE, resid_sd: np.ndarray | None = None) -> np.ndarray:
    """One procedural movie (T, H, W) -> synthetic activity (N, T) float32 (`noise`: see the module doc).
    A random calibration trial gives the behaviour and (bootstrap) the residual."""
    if noise not in NOISES:
        raise ConfigError(f"unknown synthetic noise '{noise}'; valid: {', '.join(NOISES)}")
    T = len(movie)
    k = int(rng.integers(len(trials)))
    rate = encoder_rate(encoders, movie, _fit_len(np.asarray(trials[k][2], np.float32), T))
    if noise == "bootstrap":
        act = rate + _fit_len(resid[k], T)
    else:
        sd = resid_sd if resid_sd is not None else np.concatenate(resid).std(0)
        act = rate + rng.normal(size=rate.shape).astype(np.float32) * sd[None, :]
    return np.maximum(act, 0.0).T.astype(np.float32).copy()


def activity_stats(acts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """(N, T) activities -> per-neuron 'mean', 'sd', 'zeros' (fraction of bins <= 0) over all of them."""
    a = np.concatenate([np.asarray(x, np.float32) for x in acts], 1)
    return {"mean": a.mean(1), "sd": a.std(1), "zeros": (a <= 0).mean(1)}


def compare_stats(synth: list[np.ndarray], calib: list[np.ndarray]) -> dict[str, float]:
    """How synthetic activity matches calibration activity, per statistic: the median ratio
    synthetic / calibration over neurons (mean, sd; 1 is a match), the median absolute difference in
    the fraction of zeros, and the correlation over neurons of each statistic."""
    s, c = activity_stats(synth), activity_stats(calib)
    out = {}
    for k in ("mean", "sd"):
        ok = c[k] > 1e-6
        out[f"{k}_ratio_median"] = float(np.median(s[k][ok] / c[k][ok]))
        out[f"{k}_corr"] = float(np.corrcoef(s[k], c[k])[0, 1])
    out["zeros_absdiff_median"] = float(np.median(np.abs(s["zeros"] - c["zeros"])))
    out["zeros_synth_mean"], out["zeros_calib_mean"] = float(s["zeros"].mean()), float(c["zeros"].mean())
    return out


def synth_pairs(dec, encoders: list, trials: list, movies: list[np.ndarray], back: int, fwd: int, seed: int = 0,
                noise: str = NOISE, resid: list[np.ndarray] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(linear frames (back + T + fwd, H, W), movie (T, H, W)) pairs for `image_prior.train`'s
    `pretrain_pairs`: each movie through the encoder and the noise model, decoded by `dec` (the live
    ridge: it has not seen these movies). `trials`: the calibration trials (responses (N, T),
    video, behaviour), for behaviour and residuals (`resid`, precomputed by `residuals`, or computed here)."""
    from rtdecode.decode import image_prior as ip

    if not encoders:
        raise ConfigError("synthetic pairs need the dynamic encoder (encoder steps > 0)")
    rng = np.random.default_rng([seed, 2403])
    resid = resid if resid is not None else residuals(encoders, trials)
    sd = np.concatenate(resid).std(0)
    out = []
    for m in movies:
        act = synth_activity(encoders, m, trials, resid, rng, noise, sd)
        out.append((ip.linear_frames(dec, act, back, fwd), np.asarray(m, np.float32)))
    return out
