"""Decoders: from a window of neural activity to the frame the animal saw.

`load(model_dir)` reads a model directory (card.json + weights) and returns a decoder with
`predict_window(window (N, bins), out (H, W))`; `DecodeStage` puts it in the live chain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder
from rtdecode.errors import ModelError
from rtdecode.stage import Spec, Stage

METHODS = {"ridge": RidgeDecoder, "inverse": "pipeline", "amortized": "pipeline"}


def load(folder: str | Path):
    """(card, decoder) of a model directory; ModelError names the problem."""
    card, arrays = model_dir.load(folder)
    cls = METHODS.get(card["method"])
    if cls is None:
        raise ModelError(f"{folder}: method '{card['method']}' unknown; this rtdecode knows: {', '.join(METHODS)}")
    if cls == "pipeline":  # torch is imported only for the torch decoders
        from rtdecode.decode.pipeline import PipelineDecoder as cls
    return card, cls.from_arrays(card, arrays)


class DecodeStage(Stage):
    """(N, bins) float32 window -> (H, W) float32 frame, 0-255 scale."""

    name = "decode"

    def __init__(self, card: dict, decoder):
        self.card = card
        self.decoder = decoder
        self.in_spec = Spec(np.float32, (card["neurons"], card["window"]["bins"]))
        self.out_spec = Spec(np.float32, tuple(card["frame_shape"]))

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        self.decoder.predict_window(inp, out)
