"""`rtdecode reconstruct`: decode the videos of held-out trials and score them (DESIGN 3.3)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rtdecode import decode, metrics
from rtdecode.dataset import Dataset
from rtdecode.errors import ConfigError, ModelError

RECONSTRUCT_METHODS = ("ridge",)


def reconstruct(model: str | Path, dataset: str | Path, out: str | Path, method: str | None = None,
                tiers: tuple[str, ...] = ("oracle",), progress: bool = True) -> dict:
    """Write out/videos/{trial}.npy ((H, W, T) as the dataset's, NaN padding kept) and
    out/metrics.json; return the metrics."""
    from tqdm import tqdm

    card, dec = decode.load(model)
    if method is not None and method != card["method"]:
        raise ConfigError(f"--method {method}: the model in {model} is a '{card['method']}' decoder "
                          f"(methods available here: {', '.join(RECONSTRUCT_METHODS)})")
    ds = Dataset(dataset)
    if ds.n_neurons < card["neurons"]:
        raise ModelError(f"the model expects {card['neurons']} neurons, the dataset has {ds.n_neurons}")
    if list(ds.frame_shape) != list(card["frame_shape"]):
        raise ModelError(f"the model decodes {card['frame_shape']} frames, the dataset's videos are {list(ds.frame_shape)}")
    ids = []
    for tier in tiers:
        ids += ds.require(tier)
    out = Path(out)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    mask = ds.evaluation_mask()
    pairs = []
    for i in tqdm(ids, desc="reconstruct", unit="trial", disable=not progress):
        tr = ds.load(i)
        rec = dec.predict_trial(tr.responses[: card["neurons"]]).astype(np.float32)
        full = np.full(ds.frame_shape + (ds.video_length(i),), np.nan, np.float32)
        full[:, :, : rec.shape[0]] = np.moveaxis(rec, 0, 2)
        np.save(out / "videos" / f"{i}.npy", full)
        pairs.append((rec, tr.video))
    scores = metrics.score(pairs, mask)
    result = {"method": card["method"], "model": str(Path(model).resolve()), "dataset": str(Path(dataset).resolve()),
              "tiers": list(tiers), "trial_ids": ids,
              "mask": "meta/evaluation_mask.npy" if mask is not None else "none (full frame)", **scores}
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    return result
