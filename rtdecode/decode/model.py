"""Self-describing model directories: `card.json` (rtdecode.decode.card) plus `weights.npz` (no pickle).

Every array in weights.npz is checked against the card by the decoder that loads it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.decode.card import ModelCard, new_card, read_card, write_card  # noqa: F401 (the model-directory API)
from rtdecode.errors import ModelError


def save(folder: str | Path, card: ModelCard, arrays: dict[str, np.ndarray]) -> Path:
    """Write weights.npz and card.json into `folder` (created if needed)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "weights.npz", **arrays)
    write_card(folder, card)
    return folder


def load(folder: str | Path) -> tuple[ModelCard, dict[str, np.ndarray]]:
    """(card, arrays) of a model directory; ModelError if anything is missing or damaged."""
    card = read_card(folder)
    path = Path(folder) / "weights.npz"
    if not path.is_file():
        raise ModelError(f"{folder}: weights.npz is missing")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ModelError(f"{path}: cannot read ({exc})") from exc
    check_finite(path, arrays)
    return card, arrays


def check_finite(path, arrays: dict[str, np.ndarray]) -> None:
    """ModelError unless every numeric array is finite and every scale (`*std*`) is > 0: a NaN
    weight or a zero standard deviation decodes NaN on every frame, so it must fail at load."""
    for key, a in arrays.items():
        if a.dtype.kind not in "fciub":
            raise ModelError(f"{path}: '{key}' is not a numeric array ({a.dtype}); the model directory is damaged: "
                             "fit it again (rtdecode fit DATASET --out MODEL) or restore it from a copy")
        if a.dtype.kind in "fc":
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            if bad:
                raise ModelError(f"{path}: '{key}' holds {bad} NaN or infinite value(s) of {a.size}: the fit diverged "
                                 "or the file was damaged; fit the model again (rtdecode fit DATASET --out MODEL) "
                                 "or restore it from a copy")
        if "std" in key.rsplit(".", 1)[-1]:
            bad = int(np.count_nonzero(a <= 0))
            if bad:
                raise ModelError(f"{path}: '{key}' has {bad} value(s) <= 0 (a scale the activity is divided by: "
                                 "e.g. a neuron that never varied in the calibration data); fit the model again "
                                 "(rtdecode fit DATASET --out MODEL), or drop those neurons (--neurons-subset)")


def load_module_arrays(module, arrays: dict, prefix: str) -> None:
    """Load a torch module's state from weights.npz `arrays` (keys `prefix` + state name), every key
    and shape checked first (ModelError names the first that is missing or differs); eval mode."""
    import torch  # only the torch decoders call this

    sd = module.state_dict()
    for k, t in sd.items():
        key = prefix + k
        if key not in arrays:
            raise ModelError(f"weights.npz has no '{key}'")
        if tuple(arrays[key].shape) != tuple(t.shape):
            raise ModelError(f"weights.npz '{key}' has shape {tuple(arrays[key].shape)}, the card implies {tuple(t.shape)}")
    module.load_state_dict({k: torch.from_numpy(np.asarray(arrays[prefix + k])) for k in sd})
    module.eval()
