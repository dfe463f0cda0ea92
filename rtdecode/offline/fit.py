"""`rtdecode fit`: train a decoder on the `train` trials of a Sensorium-layout dataset."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from rtdecode.decode import methods
from rtdecode.decode import model as model_dir
from rtdecode.decode import ridge
from rtdecode.decode.card import ModelCard
from rtdecode.errors import ConfigError, DatasetError
from rtdecode.offline.dataset import Dataset

log = logging.getLogger(__name__)


@dataclass
class FitJob:
    """What a method's fit function (rtdecode.decode.methods, `fit`) gets from `fit_dataset`: the
    dataset, its split, the window asked for (None: the method's default) and the options."""

    ds: Dataset
    dataset: str | Path
    out: str | Path
    method: str
    n: int  # neurons used (the first n)
    neurons_subset: int | None
    fit_ids: list[str]
    val_ids: list[str]
    val_split: str
    bins: int | None
    lag_min: int | None
    progress: bool
    options: dict  # everything else fit_dataset was given (n_basis, compress, rank, pipeline options, ...)

    def training(self, **info) -> dict:
        """The card's `training` block: the dataset and its split, then `info`."""
        return {"dataset": str(Path(self.dataset).resolve()), "train_trials": len(self.fit_ids),
                "validation_trials": len(self.val_ids), **info}


# The grid of the ridge's brightness share (rtdecode.decode.ridge.shrink_brightness) by the responses'
# modality (Dataset.modality). On spike counts the shrinkage did not gain on both simulators: 1,000 units,
# seed 0 (the choosing seed), against keeping all brightness, v1_kit -0.005, the project's rig +0.004
# (benchmarks/results/spikes_choose.json); on calcium it gained +0.04 on the rig
# (benchmarks/results/ridge_brightness.json), so it stays there.
BRIGHTNESS_BY_MODALITY = {"calcium": ridge.BRIGHTNESS_KEEP, "spikes": (1.0,)}


def fit_dataset(dataset: str | Path, out: str | Path, method: str = "ridge", neurons_subset: int | None = None,
                bins: int | None = None, lag_min: int | None = None, n_basis: int | None = None,
                val_fraction: float = 0.2, progress: bool = True, checkpoint_every: int | None = None,
                resume: bool = False, checkpoint_dir: str | Path | None = None, compress=None,
                brightness_keep=None, rank: int | None = 128, val_split: str = "last",
                brightness_choice: str = "validation", **pipeline_options) -> ModelCard:
    """Fit `method` on the dataset's train trials; write a model directory to `out`; return its card.

    The method's registry entry (rtdecode.decode.methods) names its fit function, which gets a FitJob.
    `inverse` trains the dynamic encoder (the iterative inverse's model); `amortized` runs
    encoder -> inverse -> amortized decoder. `pipeline_options` go to
    `rtdecode.decode.pipeline.fit_pipeline` (encoder_steps, inverse_cfg, amortized_steps, ...).

    Encoder methods run under torchrun too (rtdecode.decode.distributed: every rank calls this,
    rank 0 writes `out`). `checkpoint_every` K: checkpoints every K steps of each training loop
    (0: only at the end of each stage) in `checkpoint_dir` (default OUT/checkpoints); `resume`
    continues from them. `bins`, `lag_min`: the window (default 8 and 0; for ridge, when neither is
    given, the window is chosen on the validation trials among ridge.WINDOWS, with the penalty). `compress`: the activity compression of ridge and
    of the amortized decoder's ridge path (rtdecode.decode.ridge.compress; 0: none; a sequence: chosen
    on the validation trials with the penalty, e.g. (6, 0); None: ridge.COMPRESS). `brightness_keep`: the grid of
    the ridge's brightness share (rtdecode.decode.ridge.shrink_brightness; (1.0,): keep it all; None: the
    dataset's modality's default, `BRIGHTNESS_BY_MODALITY`, recorded in the card's training.modality).
    `rank` (ridge only): rtdecode.decode.ridge.fit's truncation (None: full rank). `val_split`: the
    validation trials are the last `val_fraction` of the train trials ("last", contiguous) or as many
    drawn at random with seed 0 ("random"). `brightness_choice` (ridge only): the share chosen with the
    penalty on the validation trials ("validation") or afterwards on out-of-fold reconstructions of
    every train trial ("oof"; rtdecode.decode.ridge.fit).
    Validation scores use the dataset's evaluation mask (meta/evaluation_mask.npy) when it has one."""
    from rtdecode.decode import distributed as dist

    spec = methods.check_fit_method(method)
    if compress is None:
        compress = ridge.COMPRESS
    env = dist.current()
    if not spec.encoder and (env.distributed or checkpoint_every is not None or resume):
        raise ConfigError(f"--method {method} fits in one pass on one process: run it without torchrun / --nproc, "
                          "--checkpoint-every and --resume (they apply to inverse and amortized)")
    if not 0 < val_fraction < 1:
        raise ConfigError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    ds = Dataset(dataset)
    train = ds.require("train")
    if len(train) < 2:
        raise DatasetError(f"{ds.root}: {len(train)} train trial(s); fitting needs at least 2 (one for validation)")
    n = ds.n_neurons
    if neurons_subset is not None:
        if not 1 <= neurons_subset <= n:
            raise ConfigError(f"--neurons-subset must be between 1 and {n} (the dataset's neurons), got {neurons_subset}")
        n = neurons_subset
    nv = max(1, int(round(len(train) * val_fraction)))
    if val_split == "last":
        fit_ids, val_ids = train[:-nv], train[-nv:]
    elif val_split == "random":
        import numpy as np

        pick = set(np.random.default_rng(0).permutation(len(train))[:nv].tolist())
        fit_ids = [t for j, t in enumerate(train) if j not in pick]
        val_ids = [t for j, t in enumerate(train) if j in pick]
    else:
        raise ConfigError(f"val_split must be 'last' or 'random', got {val_split!r}")
    if checkpoint_every is not None or resume:
        pipeline_options["checkpoints"] = dist.Checkpoints(
            Path(checkpoint_dir) if checkpoint_dir else Path(out) / "checkpoints", checkpoint_every or 0, resume, env)
    modality = ds.modality()
    if brightness_keep is None:
        brightness_keep = BRIGHTNESS_BY_MODALITY[modality]
    options = {"n_basis": n_basis, "compress": compress, "brightness_keep": brightness_keep, "rank": rank,
               "modality": modality, **pipeline_options}
    if method == "ridge":
        options["brightness_choice"] = brightness_choice
    elif brightness_choice != "validation":
        raise ConfigError(f"brightness_choice applies to --method ridge only (got {method})")
    job = FitJob(ds, dataset, out, method, n, neurons_subset, fit_ids, val_ids, val_split, bins, lag_min, progress,
                 options)
    return methods.resolve(spec.fit)(job)


def fit_ridge(job: FitJob) -> ModelCard:
    """Method ridge's fit (rtdecode.decode.methods): one pass over the trials; the window is chosen on
    the validation trials among ridge.WINDOWS when neither bins nor lag_min is given."""
    from tqdm import tqdm

    ds, n, o = job.ds, job.n, job.options
    windows = ridge.WINDOWS if job.bins is None and job.lag_min is None else None
    modality = o.get("modality", "calcium")

    def source(ids, desc):
        def it():
            for i in tqdm(ids, desc=desc, unit="trial", disable=not job.progress, leave=False):
                tr = ds.load(i)
                yield tr.responses[:n], tr.video
        return it

    dec, info = ridge.fit(source(job.fit_ids, "fit trials"), source(job.val_ids, "validation trials"),
                          lag_min=0 if job.lag_min is None else job.lag_min, bins=8 if job.bins is None else job.bins,
                          windows=windows, n_basis=o["n_basis"], compress_scale=o["compress"], rank=o["rank"],
                          mask=ds.evaluation_mask(), brightness_keep=o["brightness_keep"],
                          brightness_choice=o.get("brightness_choice", "validation"),
                          progress=(lambda s: log.info("ridge: %s", s)))
    card = model_dir.new_card(job.method, n, dec.lag_min, dec.basis.shape[0], dec.frame_shape, 30.0,
                              training=job.training(validation_split=job.val_split, modality=modality,
                                                    brightness_keep_grid=list(o["brightness_keep"]),
                                                    neurons_subset=job.neurons_subset, **info))
    model_dir.save(job.out, card, dec.arrays())
    copy_activity_order(job.dataset, job.out)
    return card


def fit_encoder(job: FitJob) -> ModelCard:
    """Methods inverse and amortized's fit (rtdecode.decode.methods): the encoder pipeline
    (rtdecode.decode.pipeline.fit_pipeline), with the pipeline options fit_dataset was given."""
    o = dict(job.options)
    for unused in ("n_basis", "rank"):
        o.pop(unused)
    modality = o.pop("modality", "calcium")
    o["compress_scale"] = o.pop("compress")
    if job.bins is None and job.lag_min is None:  # the linear path's window chosen as method ridge chooses it
        o.setdefault("ridge_windows", ridge.WINDOWS)
    return _fit_pipeline(job.ds, job.dataset, job.out, job.method, job.n, job.neurons_subset, job.fit_ids,
                         job.val_ids, 8 if job.bins is None else job.bins, 0 if job.lag_min is None else job.lag_min,
                         job.progress, o, {"modality": modality, "brightness_keep_grid": list(o["brightness_keep"])})


def copy_activity_order(dataset: str | Path, out: str | Path) -> None:
    """The dataset's meta/activity_order.json (the (plane, scan ROI) fields of its activity vector,
    written by `rtdecode dataset` and `rtdecode export` with several fields) into the model folder,
    where `rtdecode run` checks it against the rig file's source.planes / source.scan_rois."""
    import shutil

    src = Path(dataset) / "meta" / "activity_order.json"
    if src.is_file():
        shutil.copyfile(src, Path(out) / "activity_order.json")


def load_trials(ds: Dataset, ids: list[str], n: int, progress: bool = False, desc: str = "load") -> list:
    """(responses (n, T), video (T, H, W), behaviour (T, 4)) per trial; DatasetError for trials
    that cannot be used (all NaN, NaN frames inside the video)."""
    import numpy as np
    from tqdm import tqdm

    from rtdecode.decode.encoder import behaviour_matrix

    out = []
    for i in tqdm(ids, desc=desc, unit="trial", disable=not progress, leave=False):
        tr = ds.load(i)
        if tr.video.shape[0] == 0:
            raise DatasetError(f"{ds.root}: trial {i} is all NaN (no valid frames in data/videos/{i}.npy "
                               f"and data/responses/{i}.npy); remove it or mark its tier as something else")
        if not np.isfinite(tr.video).all():
            raise DatasetError(f"{ds.root}: data/videos/{i}.npy has NaN or inf frames before its end")
        out.append((tr.responses[:n], tr.video, behaviour_matrix(tr.behavior, tr.pupil_center)))
    return out


def _fit_pipeline(ds, dataset, out, method, n, neurons_subset, fit_ids, val_ids, bins, lag_min, progress, options,
                  training_extra=None):
    import time

    from rtdecode.decode import distributed as dist
    from rtdecode.decode.pipeline import fit_pipeline

    env = dist.current()
    progress = progress and env.is_main
    t0 = time.perf_counter()
    trials = load_trials(ds, fit_ids, n, progress, "load train")
    val = load_trials(ds, val_ids, n, progress, "load validation")
    options = {"progress": progress, **options}
    dec, arrays, fields = fit_pipeline(trials, val, method=method, lag_min=lag_min, bins=bins,
                                       frame_shape=ds.frame_shape, val_mask=ds.evaluation_mask(), **options)
    info = fields.pop("training_pipeline")
    info["fit_seconds"] = time.perf_counter() - t0
    normalisation = {
        "activity": "amortized: log1p(max(x, 0) / act_scale) when act_scale > 0, then z-score per neuron "
                    "inside the network (act_scale, act_mean, act_std buffers); "
                    "encoder: raw activity per frame (Poisson)",
        "pixels": f"network output and inverse in 0-255; encoder input (pixel - {fields['encoder']['pix_centre']}) / "
                  f"{fields['encoder']['pix_scale']}",
        "behaviour": "encoder: z-scored with the encoder's beh_mean, beh_std buffers",
    }
    window = dec.card.window  # the image prior's is wider than the ridge's (rtdecode.decode.image_prior)
    card = model_dir.new_card(method, n, window.lag_min, window.bins, ds.frame_shape, 30.0, normalisation,
                              training={"dataset": str(Path(dataset).resolve()), "train_trials": len(fit_ids),
                                        "validation_trials": len(val_ids), "neurons_subset": neurons_subset,
                                        **(training_extra or {}), **info},
                              distributed=env.card_fields(), **fields)
    if env.is_main:
        model_dir.save(out, card, arrays)
        copy_activity_order(dataset, out)
        log.info("fit %s: %.0f s", method, info["fit_seconds"])
    env.barrier()
    return card
