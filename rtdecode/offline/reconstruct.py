"""`rtdecode reconstruct`: decode the videos of held-out trials and score them (docs/design.md 3.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtdecode import decode, metrics
from rtdecode.decode import methods
from rtdecode.errors import ConfigError, DatasetError, ModelError
from rtdecode.offline.dataset import Dataset


def reconstruct(model: str | Path, dataset: str | Path, out: str | Path, method: str | None = None,
                tiers: tuple[str, ...] = ("oracle",), progress: bool = True, iterations: int | None = None,
                uncertainty: bool = False) -> dict:
    """Write out/videos/{trial}.npy ((H, W, T) as the dataset's, NaN padding kept) and
    out/metrics.json; return the metrics. For encoder-based models `method` is amortized
    (default for an amortized model), inverse (cold, from gray) or warm (the inverse started from
    the amortized output); `iterations` overrides the inverse's (or the warm refinement's) count.
    `uncertainty` (image-prior amortized models): also out/uncertainty/{trial}.npy, the per-pixel
    spread of the model's fold ensemble, and its calibration against the error in the metrics."""
    from tqdm import tqdm

    card, dec = decode.load(model)
    spec = methods.get(card.method, str(model))
    modes = spec.modes
    if method is None:
        method = modes[0]
    if method not in modes:
        raise ConfigError(f"--method {method}: the model in {model} is a '{card.method}' decoder; it can "
                          f"reconstruct with {', '.join(modes)}")
    ds = Dataset(dataset)
    if ds.n_neurons < card.neurons:
        raise ModelError(f"the model in {model} expects {card.neurons} neurons, the dataset {dataset} has "
                         f"{ds.n_neurons} (unit_ids.npy)")
    if list(ds.frame_shape) != list(card.frame_shape):
        raise ModelError(f"the model in {model} decodes {list(card.frame_shape)} frames, the dataset's videos are "
                         f"{list(ds.frame_shape)}")
    if uncertainty and getattr(dec, "folds", None) is None:
        raise ConfigError(f"--uncertainty: the model in {model} has no fold ensemble (fit --method amortized "
                          "with the default image-prior kind writes one)")
    ids = []
    for tier in tiers:
        ids += ds.require(tier)
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    mask = ds.evaluation_mask()
    pairs, seconds, spreads = [], [], []
    for i in tqdm(ids, desc=f"reconstruct ({method})", unit="trial", disable=not progress):
        tr = ds.load(i)
        if tr.video.shape[0] == 0:
            raise DatasetError(f"{ds.root}: trial {i} is all NaN; nothing to reconstruct")
        if method in spec.iterative:  # the iterative inverse: behaviour in, seconds out
            from rtdecode.decode.encoder import behaviour_matrix

            rec, inf = dec.reconstruct(tr.responses[: card.neurons], behaviour_matrix(tr.behavior, tr.pupil_center),
                                       method, iterations=iterations)
            seconds.append(inf["seconds"])
        else:
            rec = dec.predict_trial(tr.responses[: card.neurons])
        rec = np.asarray(rec, np.float32)
        full = np.full(ds.frame_shape + (ds.video_length(i),), np.nan, np.float32)
        full[:, :, : rec.shape[0]] = np.moveaxis(rec, 0, 2)
        np.save(out / "videos" / f"{i}.npy", full)
        pairs.append((rec, tr.video))
        if uncertainty:
            sp = dec.uncertainty_trial(tr.responses[: card.neurons])
            (out / "uncertainty").mkdir(exist_ok=True)
            full[:, :, : sp.shape[0]] = np.moveaxis(sp, 0, 2)
            np.save(out / "uncertainty" / f"{i}.npy", full)
            spreads.append(sp)
    scores = metrics.score(pairs, mask)
    if uncertainty:
        scores["uncertainty"] = metrics.uncertainty_calibration([(s, r, v) for s, (r, v) in zip(spreads, pairs)], mask)
    result = {"method": method, "model_method": card.method, "seconds_per_trial": (float(np.mean(seconds)) if seconds else None), "model": str(Path(model).resolve()), "dataset": str(Path(dataset).resolve()),
              "tiers": list(tiers), "trial_ids": ids,
              "mask": "meta/evaluation_mask.npy" if mask is not None else "none (full frame)", **scores}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
