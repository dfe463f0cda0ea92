"""Self-describing model directories: `card.json` (read with json) plus `weights.npz` (no pickle).

card.json holds what a user or a backend needs to know without running code: the method, the
number of neurons, the activity window, the frame size, the normalisation, the version, and how
the model was trained. Every array in weights.npz is checked against the card on load.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import numpy as np

import rtdecode
from rtdecode.errors import ModelError

FORMAT = "rtdecode-model"
CARD_VERSION = 1
REQUIRED = ("format", "card_version", "method", "neurons", "window", "frame_shape", "fps", "normalisation")


def new_card(method: str, neurons: int, lag_min: int, bins: int, frame_shape: tuple[int, int],
             fps: float, **extra) -> dict:
    """A card for a decoder that maps activity bins [f+lag_min, f+lag_min+bins) to frame f."""
    card = {
        "format": FORMAT,
        "card_version": CARD_VERSION,
        "rtdecode_version": rtdecode.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "method": method,
        "neurons": int(neurons),
        "window": {"lag_min": int(lag_min), "bins": int(bins)},
        "frame_shape": [int(frame_shape[0]), int(frame_shape[1])],
        "fps": float(fps),
        "normalisation": {
            "activity": "z-score per neuron with act_mean, act_std (weights.npz)",
            "pixels": "0-255 (the stimulus scale); pixel_mean added back",
        },
    }
    card.update(extra)
    return card


def save(folder: str | Path, card: dict, arrays: dict[str, np.ndarray]) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "weights.npz", **arrays)
    (folder / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return folder


def read_card(folder: str | Path) -> dict:
    path = Path(folder) / "card.json"
    if not path.is_file():
        raise ModelError(f"{folder} is not a model directory: {path.name} is missing (make one with 'rtdecode fit')")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    missing = [k for k in REQUIRED if k not in card]
    if missing:
        raise ModelError(f"{path}: missing fields {', '.join(missing)}")
    if card["format"] != FORMAT:
        raise ModelError(f"{path}: format is '{card['format']}', expected '{FORMAT}'")
    if card["card_version"] > CARD_VERSION:
        raise ModelError(f"{path}: card version {card['card_version']} is newer than this rtdecode understands "
                         f"({CARD_VERSION}); upgrade rtdecode")
    return card


def load(folder: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
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
    return card, arrays
