"""`rtdecode fit`: train a decoder on the `train` trials of a Sensorium-layout dataset."""

from __future__ import annotations

import logging
from pathlib import Path


from rtdecode.dataset import Dataset
from rtdecode.decode import model as model_dir
from rtdecode.decode import ridge
from rtdecode.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

FIT_METHODS = ("ridge",)


def fit_dataset(dataset: str | Path, out: str | Path, method: str = "ridge", neurons_subset: int | None = None,
                bins: int = 8, lag_min: int = 0, n_basis: int | None = None, val_fraction: float = 0.2,
                progress: bool = True) -> dict:
    """Fit `method` on the dataset's train trials; write a model directory to `out`; return its card."""
    from tqdm import tqdm

    if method not in FIT_METHODS:
        raise ConfigError(f"unknown fit method '{method}'; valid: {', '.join(FIT_METHODS)}")
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
    fit_ids, val_ids = train[:-nv], train[-nv:]

    def source(ids, desc):
        def it():
            for i in tqdm(ids, desc=desc, unit="trial", disable=not progress, leave=False):
                tr = ds.load(i)
                yield tr.responses[:n], tr.video
        return it

    dec, info = ridge.fit(source(fit_ids, "fit trials"), source(val_ids, "validation trials"),
                          lag_min=lag_min, bins=bins, n_basis=n_basis,
                          progress=(lambda s: log.info("ridge: %s", s)))
    card = model_dir.new_card(method, n, lag_min, bins, dec.frame_shape, 30.0,
                              training={"dataset": str(Path(dataset).resolve()), "train_trials": len(fit_ids),
                                        "validation_trials": len(val_ids), "neurons_subset": neurons_subset, **info})
    model_dir.save(out, card, dec.arrays())
    return card
