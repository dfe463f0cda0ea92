"""The encoder -> inverse -> amortized pipeline and the decoder it writes (methods `inverse`, `amortized`).

`fit_pipeline` (used by `rtdecode fit --method inverse|amortized`):
  1. trains the dynamic encoder(s) on the calibration (train) trials, the last ones validating;
  2. derives the population mask from the readout positions;
  3. (amortized) runs the iterative inverse on calibration trials -> warm-start targets;
  4. (amortized) synthesises extra pairs: train-pool movies -> encoder -> Poisson activity;
  5. (amortized) trains the amortized decoder: inverse targets first, then the true frames.

`PipelineDecoder` (the model directory's decoder) reconstructs a trial by `amortized` (one
forward pass per frame), `inverse` (cold, from gray) or `warm` (the inverse started from the
amortized output); live, `predict_window` is the amortized network.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from rtdecode.decode import amortized as am
from rtdecode.decode import crossfit
from rtdecode.decode import distributed as dist
from rtdecode.decode import image_prior as ip
from rtdecode.decode import encoder as enc
from rtdecode.decode import methods
from rtdecode.decode import ridge
from rtdecode.decode.card import ModelCard, new_card
from rtdecode.decode.inverse import InverseConfig, invert, invert_trials
from rtdecode.decode.residual import ResidualConfig, RidgeResidualNet
from rtdecode.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

class PipelineDecoder:
    def __init__(self, card: ModelCard, encoders: list, net: am.AmortizedNet | None, mask: np.ndarray):
        if card.inverse is None:
            raise ModelError(f"a '{card.method}' card needs the 'inverse' field (the iterative inverse's settings)")
        self.card = card
        self.encoders = encoders
        self.net = net
        self.mask = mask
        self.frame_shape = card.frame_shape
        self.lag_min = card.window.lag_min
        self.bins = card.window.bins
        self.inverse_cfg = InverseConfig(**{k: v for k, v in card.inverse.items() if k != "extra"})
        self.warm_iterations = int(card.warm_iterations if card.warm_iterations is not None
                                   else max(1, self.inverse_cfg.iterations // 10))

    @property
    def modes(self) -> tuple[str, ...]:
        """How this model can reconstruct (rtdecode.decode.methods); the first is the default. A model
        fitted without an encoder (the amortized default) reconstructs only 'amortized'."""
        if not self.encoders:
            return ("amortized",)
        return methods.get(self.card.method).modes

    def torch_module(self) -> torch.nn.Module:
        """float32 (1, N, bins) raw activity -> (1, H, W) frame in 0-255, normalisation included."""
        if self.net is None:
            raise ModelError(f"a '{self.card.method}' model has no feed-forward network; fit --method amortized")
        return self.net.eval()

    as_torch_module = torch_module  # the name rtdecode.decode.export looks for

    def predict_window(self, window: np.ndarray, out: np.ndarray) -> None:
        with torch.no_grad():
            out[...] = self.torch_module()(torch.from_numpy(np.asarray(window, np.float32))[None])[0].numpy()

    folds: tuple[np.ndarray, np.ndarray] | None = None  # the image prior's fold ensemble (image_prior.FOLD_KEYS)

    def uncertainty_trial(self, responses: np.ndarray) -> np.ndarray:
        """(N, T) activity -> (T, H, W) per-pixel uncertainty (rtdecode.decode.image_prior.spread);
        ModelError for a model without a fold ensemble."""
        if self.folds is None:
            raise ModelError("this model has no fold ensemble (image-prior amortized models fitted by this rtdecode "
                             "have one): no uncertainty")
        fill = ridge.raw_fill(self.net.act_mean[:, 0].numpy(), float(self.net.act_scale[0]))
        w = am.windows_of_trial(np.asarray(responses, np.float32), self.lag_min, self.net.bins, fill)
        return np.concatenate([ip.spread(self.net, *self.folds, w[s:s + 256]) for s in range(0, len(w), 256)])

    def predict_trial(self, responses: np.ndarray) -> np.ndarray:
        if self.net is None:
            raise ModelError("this model has no amortized network; reconstruct it with --method inverse")
        return am.predict_trial(self.net, responses, self.lag_min)

    def reconstruct(self, responses: np.ndarray, behaviour: np.ndarray, mode: str = "amortized",
                    iterations: int | None = None, callback=None, record_every: int = 0) -> tuple[np.ndarray, dict]:
        """(N, T) activity + (T, 4) behaviour -> (T, H, W) reconstruction and info."""
        if mode not in self.modes:
            raise ConfigError(f"--method {mode}: this '{self.card.method}' model can reconstruct with "
                              f"{', '.join(self.modes)}")
        t0 = time.perf_counter()
        if mode == "amortized":
            rec = self.predict_trial(responses)
            return rec, {"seconds": time.perf_counter() - t0}
        cfg = InverseConfig(**{**asdict(self.inverse_cfg), "record_every": record_every})
        init = None
        if mode == "warm":
            init = self.predict_trial(responses)
            cfg.iterations = self.warm_iterations if iterations is None else iterations
            cfg.warmup = min(cfg.warmup, max(1, cfg.iterations // 2))
        elif iterations is not None:
            cfg.iterations = iterations
        rec, info = invert(self.encoders, responses, behaviour, mask=self.mask, init=init, cfg=cfg, callback=callback)
        info["seconds"] = time.perf_counter() - t0
        return rec, info

    @classmethod
    def from_arrays(cls, card: ModelCard, arrays: dict) -> "PipelineDecoder":
        n, (h, w) = card.neurons, card.frame_shape
        if card.encoder is None:
            raise ModelError(f"a '{card.method}' card needs the 'encoder' field (the encoder's configuration)")
        if "mask" not in arrays or arrays["mask"].shape != (h, w):
            raise ModelError(f"weights.npz 'mask' missing or not of the card's frame shape {(h, w)}")
        encs = [enc.from_arrays(arrays, f"encoder{k}.", n, (h, w), card.encoder) for k in range(card.encoder["models"])]
        net = am.net_from_arrays(arrays, card) if card.amortized is not None else None
        dec = cls(card, encs, net, arrays["mask"])
        if net is not None and all(k in arrays for k in ip.FOLD_KEYS):
            # a fold ensemble (the uncertainty) is saved beside networks with a linear path (w_in, w_out)
            if getattr(net, "w_in", None) is None or getattr(net, "w_out", None) is None:
                raise ModelError(f"weights.npz holds a fold ensemble but the '{card.amortized.get('kind')}' network "
                                 "has no linear path it could belong to; fit the model again")
            w_in, w_out = (arrays[k] for k in ip.FOLD_KEYS)
            if w_in.shape[1:] != tuple(net.w_in.shape) or w_out.shape[1:] != tuple(net.w_out.shape) \
                    or len(w_in) != len(w_out) or len(w_in) < 2:
                raise ModelError(f"weights.npz fold ensemble {w_in.shape} / {w_out.shape} does not match the linear "
                                 f"path {tuple(net.w_in.shape)} / {tuple(net.w_out.shape)}; fit the model again")
            dec.folds = (w_in, w_out)
        return dec


def synth_pairs(encoders: list, behaviours: list[np.ndarray], n_movies: int, frames: int, seed: int,
                sources: tuple[str, ...] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """(activity (N, T), movie (T, H, W)) pairs: train-pool movies (photographs of the train pool,
    gratings, bars, pink noise) through the encoder ensemble's mean rate, Poisson-sampled."""
    from rtdecode.stimuli import movies

    sources = sources or (movies.TRAIN_IMAGES + movies.SYNTHETIC_KINDS + ("pink",) * 4)
    rng = np.random.default_rng([seed, 77])
    out = []
    for k in range(n_movies):
        src = sources[int(rng.integers(len(sources)))]
        movie = movies.make_movie(src, frames, rng)
        b = behaviours[int(rng.integers(len(behaviours)))]
        if len(b) < frames:
            b = np.resize(b, (frames, b.shape[1]))
        b = torch.from_numpy(np.asarray(b[:frames], np.float32))
        v = torch.from_numpy(enc.normalise_video(movie))
        rate = torch.stack([enc.predict_trial(e, v, b) for e in encoders]).mean(0)
        act = rng.poisson(rate.numpy().astype(np.float64)).astype(np.float32)
        out.append((act.T.copy(), movie))
    return out


def fit_pipeline(trials: list, val_trials: list, *, method: str = "amortized", lag_min: int = 0, bins: int = 8,
                 frame_shape=(36, 64), encoder_steps: int | None = None, encoder_models: int = 1,
                 encoder_cfg: enc.EncoderConfig | None = None, inverse_cfg: InverseConfig | None = None,
                 inverse_trials: int | None = None, warm_iterations: int | None = None,
                 synth_movies: int | None = None, synth_frames: int = 300, amortized_steps: tuple[int, int] | None = None,
                 amortized_cfg: am.AmortizedConfig | ResidualConfig | ip.ImagePriorConfig | None = None, batch: int = 64, seed: int = 0,
                 compress_scale: float | None = ridge.COMPRESS, brightness_keep=ridge.BRIGHTNESS_KEEP,
                 ridge_windows=None, progress: bool = False, stash: dict | None = None,
                 say: Callable[[str], None] | None = None, checkpoints=None,
                 val_mask: np.ndarray | None = None) -> tuple[PipelineDecoder, dict, dict]:
    """trials / val_trials: lists of (responses (N, T), video (T, H, W), behaviour (T, 4)).
    `val_mask`: (H, W) bool, the region the validation trials are scored over (the dataset's
    evaluation mask; None: the full frame).
    Returns (decoder, arrays for weights.npz, card fields). `stash`, when given, receives
    intermediate results (the inverse targets, the synthetic pairs) for reports. Under torchrun
    every rank runs this (rtdecode.decode.distributed); `checkpoints` saves / resumes each stage.

    `amortized_cfg`: an `ImagePriorConfig` (the default: ridge + a U-Net over a clip of cross-fitted
    linear frames, rtdecode.decode.image_prior; trained in one process, `amortized_steps[1]` sets its
    steps when given), a `ResidualConfig` (ridge + a dense residual network initialised at zero,
    rtdecode.decode.residual) or an `AmortizedConfig` (the older stand-alone network). The config's
    `kind` names its entry in methods.AMORTIZED_KINDS (methods.LEGACY_AMORTIZED for the stand-alone
    network), whose `prepare` checks the options and whose `fit` trains it. Defaults that
    depend on it (a ridge start, `ridge_start`, or not): `inverse_trials` (residual: 0, no warm-start targets; stand-alone: 8),
    `amortized_steps` (residual: (0, 1500); stand-alone: (1000, 1000)), `encoder_steps` (1000:
    the encoder reconstruct --method warm|inverse needs; the warm start gained +0.013 to +0.016 over
    3 seeds, benchmarks/results/warm_start_realistic.json; 0 trains none) and `synth_movies`
    (residual: 0; stand-alone: 20). `compress_scale`: the residual's ridge path compression
    (rtdecode.decode.ridge.compress; None or 0: none); `brightness_keep`: its brightness shrinkage
    grid (rtdecode.decode.ridge.shrink_brightness; (1.0,): none). `ridge_windows`: None (the image
    prior's ridge uses `lag_min`, `bins`) or (lag_min, bins) candidates chosen on the validation
    trials with the penalty, as `rtdecode fit --method ridge` chooses (ridge.fit's `windows`)."""

    say = say or (lambda s: log.info("fit: %s", s))
    if method not in methods.encoder_methods():
        raise ConfigError(f"unknown pipeline method '{method}'; valid: {', '.join(methods.encoder_methods())}")
    network = methods.get(method).live  # amortized: a feed-forward network after the encoder; inverse: none
    inverse_cfg = inverse_cfg or InverseConfig()
    amortized_cfg = amortized_cfg or ip.ImagePriorConfig()
    kind = methods.kind_of(amortized_cfg)
    residual = kind.ridge_start  # the kinds that start as ridge share these defaults
    if network and kind.prepare is not None:  # the kind's own checks, before any training
        amortized_cfg = methods.resolve(kind.prepare)(amortized_cfg, inverse_trials=inverse_trials,
                                                      synth_movies=synth_movies, amortized_steps=amortized_steps,
                                                      checkpoints=checkpoints)
    if inverse_trials is None:
        inverse_trials = 0 if residual else 8
    if amortized_steps is None:
        amortized_steps = (0, 1500) if residual else (1000, 1000)
    if encoder_steps is None:
        encoder_steps = 1000
    if synth_movies is None:
        synth_movies = 0 if residual else 20
    if isinstance(amortized_cfg, ip.ImagePriorConfig):
        # its synthetic pairs are its own (procedural movies, cfg.synth_movies), made in fit_image_prior
        if network and amortized_cfg.synth_movies and amortized_cfg.pretrain_steps and encoder_steps == 0:
            raise ConfigError("--synth-movies with the image-prior decoder needs the dynamic encoder (the "
                              "simulator that turns the procedural movies into activity): drop --encoder-steps 0")
        synth_movies = 0
    N = trials[0][0].shape[0]
    timings = {}
    t0 = time.perf_counter()
    tr = enc.TrialData([t[1] for t in trials], [t[2] for t in trials], [t[0] for t in trials])
    va = enc.TrialData([t[1] for t in val_trials], [t[2] for t in val_trials], [t[0] for t in val_trials])
    if encoder_steps == 0 and (not network or not residual or synth_movies or inverse_trials):
        raise ConfigError("encoder_steps 0 (no encoder) needs --method amortized with the residual decoder, "
                          "no synthetic movies and no inverse targets (--synth-movies 0 --inverse-trials 0)")
    encoders, enc_infos = enc.train_ensemble(tr, va, encoder_models if encoder_steps else 0, cfg=encoder_cfg,
                                             frame_shape=frame_shape, steps=encoder_steps, seed=seed,
                                             progress=progress, checkpoints=checkpoints, say=say)
    const_nll = enc.constant_corr_baseline(tr, va)
    model_nll = float(np.mean([enc.poisson_nll(e, va) for e in encoders])) if encoders else None
    timings["encoder_s"] = time.perf_counter() - t0
    if encoders:
        say(f"encoder validation correlation {np.mean([i['val_corr'] for i in enc_infos]):.3f}")
        mask = encoders[0].population_mask()
    else:  # no encoder: an amortized-only model (no reconstruct --method warm|inverse)
        mask = np.ones(frame_shape, np.float32)
    arrays = {"mask": mask}
    for k, e in enumerate(encoders):
        arrays.update(enc.state_arrays(e, f"encoder{k}."))
    fields = {  # card fields beyond the basics (rtdecode.decode.card)
        "encoder": {**vars(encoders[0].cfg if encoders else enc.EncoderConfig()), "models": len(encoders), "pix_centre": enc.PIX_CENTRE,
                    "pix_scale": enc.PIX_SCALE, "behaviour": ["pupil", "running", "pupil_x", "pupil_y"]},
        "inverse": {k: v for k, v in asdict(inverse_cfg).items() if k != "extra"},
        "warm_iterations": int(warm_iterations or max(1, inverse_cfg.iterations // 10)),
    }
    info = {"encoder": [{k: v for k, v in i.items()} for i in enc_infos],
            "encoder_val_nll_per_frame": model_nll, "constant_val_nll_per_frame": const_nll}
    if not network:
        info["timings"] = timings
        return (PipelineDecoder(new_card(method, N, lag_min, bins, frame_shape, 30.0, **fields), encoders, None, mask),
                arrays, {**fields, "training_pipeline": info})

    # 3. inverse targets of the calibration trials
    t1 = time.perf_counter()
    inv_ids = list(range(len(trials) if inverse_trials is None else min(inverse_trials, len(trials))))
    inv_targets = invert_trials(encoders, [(trials[i][0], trials[i][2]) for i in inv_ids], mask=mask,
                                cfg=inverse_cfg, progress=progress, desc="inverse (calibration)",
                                checkpoints=checkpoints)
    timings["inverse_targets_s"] = time.perf_counter() - t1
    # 4. synthetic pairs
    t2 = time.perf_counter()
    synth = synth_pairs(encoders, [t[2] for t in trials], synth_movies, synth_frames, seed) if synth_movies else []
    timings["synth_s"] = time.perf_counter() - t2
    # 5. amortized decoder
    t3 = time.perf_counter()
    job = AmortizedJob(trials, val_trials, amortized_cfg, lag_min, bins, frame_shape, inv_ids, inv_targets, synth,
                       amortized_steps, batch, seed, progress, say, checkpoints, compress_scale, val_mask,
                       brightness_keep, stash, ridge_windows, encoders)
    fitted = methods.resolve(kind.fit)(job)
    net, am_info = fitted.net, fitted.info
    arrays.update(fitted.arrays)
    timings["amortized_s"] = time.perf_counter() - t3
    timings["total_s"] = time.perf_counter() - t0
    arrays.update(am.net_arrays(net))
    fields["amortized"] = asdict(amortized_cfg)
    info.update({"amortized": am_info, "inverse_trials": len(inv_ids), "synth_movies": len(synth),
                 "timings": timings})
    if stash is not None:
        stash.update({"inv_ids": inv_ids, "inv_targets": inv_targets, "synth": synth, "encoders": encoders,
                      "mask": mask})
    # the kind's live window (the image prior's is wider than the ridge's: its clip of linear frames)
    lag_min, bins = fitted.window or (lag_min, bins)
    dec = PipelineDecoder(new_card(method, N, lag_min, bins, frame_shape, 30.0, **fields), encoders, net, mask)
    return dec, arrays, {**fields, "training_pipeline": info}


@dataclass
class AmortizedJob:
    """What fit_pipeline hands an amortized kind's `fit` (rtdecode.decode.methods.AmortizedKind):
    the trials (responses (N, T), video (T, H, W), behaviour), the kind's config, the ridge window,
    the inverse's warm-start targets of trials `inv_ids`, the synthetic pairs, and the training options."""

    trials: list
    val_trials: list
    cfg: Any
    lag_min: int
    bins: int
    frame_shape: tuple
    inv_ids: list
    inv_targets: list
    synth: list
    steps: tuple[int, int]
    batch: int
    seed: int
    progress: bool
    say: Callable[[str], None]
    checkpoints: Any = None
    compress_scale: float | None = ridge.COMPRESS
    val_mask: np.ndarray | None = None
    brightness_keep: Any = ridge.BRIGHTNESS_KEEP
    stash: dict | None = None
    ridge_windows: Any = None
    encoders: list = field(default_factory=list)  # the dynamic encoder(s): the image prior's synthetic pairs


@dataclass
class AmortizedFit:
    """An amortized kind's `fit` result: the network, its training report, extra arrays for
    weights.npz (beyond the network's own) and its live window (lag_min, bins) where it is not the
    ridge's (None)."""

    net: Any
    info: dict
    arrays: dict = field(default_factory=dict)
    window: tuple[int, int] | None = None


def prepare_image_prior(cfg: ip.ImagePriorConfig, *, inverse_trials, synth_movies, amortized_steps, checkpoints):
    """Kind `image_prior`: refuse the options it does not take; `amortized_steps[1]` sets its steps;
    `synth_movies` K > 0 pre-trains its U-Net on K procedural movies through the encoder
    (rtdecode.decode.synthetic; `pretrain_steps` default: as many as its training steps)."""
    if inverse_trials:
        raise ConfigError("the image-prior amortized decoder learns from cross-fitted calibration pairs only: "
                          "--inverse-trials applies to --amortized-kind ridge_residual")
    if checkpoints is not None or dist.current().distributed:
        raise ConfigError("the image-prior amortized decoder trains in one process without checkpoints: drop "
                          "--nproc / torchrun, --checkpoint-every and --resume, or use --amortized-kind "
                          "ridge_residual")
    if amortized_steps is not None:
        cfg = ip.ImagePriorConfig(**{**asdict(cfg), "steps": int(amortized_steps[1])})
    if synth_movies is not None:
        if synth_movies < 0:
            raise ConfigError(f"--synth-movies must be >= 0, got {synth_movies}")
        cfg = ip.ImagePriorConfig(**{**asdict(cfg), "synth_movies": int(synth_movies),
                                     "pretrain_steps": (cfg.pretrain_steps or cfg.steps) if synth_movies else 0})
    return cfg


def fit_image_prior_kind(job: AmortizedJob) -> AmortizedFit:
    """Kind `image_prior`: `fit_image_prior`; its window is the clip's, wider than the ridge's."""
    net, info, fold_arrays = fit_image_prior(job.trials, job.val_trials, job.cfg, job.lag_min, job.bins, job.seed,
                                             job.progress, job.say, job.compress_scale, job.val_mask,
                                             job.brightness_keep, job.stash, windows=job.ridge_windows,
                                             encoders=job.encoders)
    return AmortizedFit(net, info, fold_arrays, (net.lag_min, net.bins))


def fit_residual_kind(job: AmortizedJob) -> AmortizedFit:
    """Kind `ridge_residual`: `fit_residual`."""
    net, info = fit_residual(job.trials, job.val_trials, job.inv_ids, job.inv_targets, job.synth, job.cfg, job.steps,
                             job.lag_min, job.bins, job.batch, job.seed, job.progress, job.say, job.checkpoints,
                             job.compress_scale, job.val_mask, job.brightness_keep)
    return AmortizedFit(net, info)


def fit_standalone_kind(job: AmortizedJob) -> AmortizedFit:
    """The stand-alone network (methods.LEGACY_AMORTIZED): warm-started on the inverse's targets,
    then the true frames and the synthetic pairs."""
    N = job.trials[0][0].shape[0]
    net, phases = make_and_phases(N, job.bins, job.lag_min, job.frame_shape, job.cfg, job.trials, job.inv_ids,
                                  job.inv_targets, job.synth, job.steps, warm=True)
    val = ([t[0] for t in job.val_trials], [t[1] for t in job.val_trials])
    info = am.train_amortized(net, phases, batch=job.batch, seed=job.seed, val=val, progress=job.progress,
                              checkpoints=job.checkpoints, val_mask=job.val_mask)
    return AmortizedFit(net, info)


def fit_image_prior(trials, val_trials, cfg: ip.ImagePriorConfig, lag_min, bins, seed, progress, say,
                    compress_scale=ridge.COMPRESS, val_mask=None, brightness_keep=ridge.BRIGHTNESS_KEEP, stash=None,
                    windows=None, encoders=None):
    """Ridge (penalty and brightness share chosen on the validation trials, refitted on all), its
    cross-fitted reconstructions of every trial (rtdecode.decode.crossfit), then the image prior's
    U-Net trained on the fit trials' out-of-fold clips and validated on the validation trials' ones
    (rtdecode.decode.image_prior.train: kept only if it beats the linear decoder there). Returns
    (net, info, arrays of the K fold decoders' weights: the ensemble whose spread is the uncertainty,
    rtdecode.decode.image_prior.FOLD_KEYS). `windows`: ridge.fit's window candidates (None: `lag_min`,
    `bins`), so the linear path is the ridge `rtdecode fit --method ridge` would fit. With
    `cfg.synth_movies` and `cfg.pretrain_steps` > 0 the U-Net is first pre-trained on synthetic pairs:
    procedural movies (no photographs) through `encoders` and calibration-residual noise, decoded by
    the live ridge (rtdecode.decode.synthetic)."""
    say("ridge (the image prior's linear path)")
    dec_all, rinfo = ridge.fit(lambda: ((t[0], t[1]) for t in trials), lambda: ((t[0], t[1]) for t in val_trials),
                               lag_min=lag_min, bins=bins, windows=windows, compress_scale=compress_scale,
                               mask=val_mask, brightness_keep=brightness_keep)
    every = [(t[0], t[1]) for t in trials] + [(t[0], t[1]) for t in val_trials]
    folds = min(cfg.folds, len(every))
    fold_decs: list = []
    oof = crossfit.out_of_fold(every, dec_all, rinfo["alpha"], rinfo["brightness_keep"], folds,
                               lambda d, r: ip.linear_frames(d, r, cfg.back, cfg.fwd), progress=say,
                               decoders=fold_decs)
    net = ip.ImagePriorNet(len(dec_all.act_mean), dec_all.basis.shape[0], dec_all.basis.shape[1],
                           dec_all.weights.shape[1], dec_all.frame_shape, cfg)
    net.set_linear(dec_all)
    n = len(trials)
    if stash is not None:  # for reports and experiments: the out-of-fold frames and the live ridge
        stash.update({"oof_frames": oof, "ridge": dec_all})
    pre, synth_info = None, {}
    if cfg.synth_movies and cfg.pretrain_steps:
        from rtdecode.decode import synthetic
        from rtdecode.stimuli import procedural

        if not encoders:
            raise ConfigError("the image prior's synthetic pairs (synth_movies) need the dynamic encoder")
        t_syn = time.perf_counter()
        say(f"synthetic pairs: {cfg.synth_movies} procedural movies through the encoder")
        mean, std = procedural.match_stats([t[1] for t in trials])
        movies = procedural.movies(cfg.synth_movies, max(len(t[1]) for t in trials), seed, dec_all.frame_shape,
                                   mean, std)
        pre = synthetic.synth_pairs(dec_all, encoders, list(trials), movies, cfg.back, cfg.fwd, seed)
        synth_info = {"synth_seconds": time.perf_counter() - t_syn, "synth_noise": synthetic.NOISE}
    say("image prior (U-Net over out-of-fold linear clips)")
    info = ip.train(net, [(f, t[1]) for f, t in zip(oof[:n], trials)], [(f, t[1]) for f, t in zip(oof[n:], val_trials)],
                    seed=seed, progress=progress, val_mask=val_mask, say=say, pretrain_pairs=pre)
    info.update({"ridge": rinfo, "folds": folds, **synth_info})
    return net, info, ip.fold_arrays(fold_decs)


def fit_residual(trials, val_trials, inv_ids, inv_targets, synth, cfg: ResidualConfig, steps, lag_min, bins,
                 batch, seed, progress, say, checkpoints=None, compress_scale=ridge.COMPRESS, val_mask=None,
                 brightness_keep=ridge.BRIGHTNESS_KEEP):
    """Ridge (fit trials, penalty chosen on the validation trials) + a residual network trained on the
    recorded and synthetic pairs (after a phase on the inverse's targets when there are any), the
    best validation step kept (step 0 = ridge alone competes); then the linear path becomes the
    ridge refitted on fit + validation trials. Returns (net, info)."""
    say("ridge (the residual decoder's linear path)")
    dec_all, rinfo = ridge.fit(lambda: ((t[0], t[1]) for t in trials), lambda: ((t[0], t[1]) for t in val_trials),
                               lag_min=lag_min, bins=bins, keep_fit_only=True, compress_scale=compress_scale,
                               mask=val_mask, brightness_keep=brightness_keep)
    dec_fit = rinfo.pop("fit_only_decoder")
    net = RidgeResidualNet.from_ridge(dec_fit, cfg)
    true = am.PairSet(lag_min, bins)
    for r, v, _ in trials:
        true.add(r, v)
    for a, m in synth:
        true.add(a, m)
    phases = []
    if inv_targets and steps[0] > 0:
        inv = am.PairSet(lag_min, bins)
        for i, rec in zip(inv_ids, inv_targets):
            inv.add(trials[i][0], rec)
        phases.append(("inverse_targets", inv, steps[0]))
    phases.append(("true_frames", true, steps[1]))
    say("residual network")
    val = ([t[0] for t in val_trials], [t[1] for t in val_trials])
    info = am.train_amortized(net, phases, batch=batch, seed=seed, val=val, progress=progress,
                              checkpoints=checkpoints, patience=cfg.patience, min_gain_z=cfg.min_gain_z,
                              val_mask=val_mask)
    net.set_linear(dec_all)
    info["ridge"] = rinfo
    info["macs_per_frame"] = net.macs_per_frame()
    return net, info


def make_and_phases(N, bins, lag_min, frame_shape, cfg, trials, inv_ids, inv_targets, synth, steps, warm: bool):
    """A fresh network with the data's normalisation, and its training phases: warm = inverse
    targets (steps[0]) then true frames + synthetic (steps[1]); scratch = true frames +
    synthetic for steps[0] + steps[1]."""
    net = am.AmortizedNet(N, bins, frame_shape, cfg)
    net.lag_min = lag_min
    acts = np.concatenate([t[0] for t in trials], 1)
    with torch.no_grad():
        net.act_mean.copy_(torch.from_numpy(acts.mean(1, keepdims=True)))
        net.act_std.copy_(torch.from_numpy(np.maximum(acts.std(1, keepdims=True), 1e-3)))
        net.pixel_mean.copy_(torch.from_numpy(np.mean([t[1].mean(0) for t in trials], 0)))
    inv = am.PairSet(lag_min, bins)
    for i, rec in zip(inv_ids, inv_targets):
        inv.add(trials[i][0], rec)
    true = am.PairSet(lag_min, bins)
    for r, v, _ in trials:
        true.add(r, v)
    for a, m in synth:
        true.add(a, m)
    if warm:
        return net, [("inverse_targets", inv, steps[0]), ("true_frames", true, steps[1])]
    return net, [("true_frames", true, steps[0] + steps[1])]
