"""Decoders: from a window of neural activity to the frame the animal saw.

`load(model_dir)` reads a model directory (card.json + weights) and returns a decoder with
`predict_window(window (N, bins), out (H, W))`; `DecodeStage` puts it in the live chain. Which
class decodes which card is the method registry's business (rtdecode.decode.methods).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.decode import methods
from rtdecode.decode import model as model_dir
from rtdecode.decode.card import ModelCard
from rtdecode.stage import Spec, Stage


def from_arrays(card: ModelCard, arrays: dict, where: str = "model"):
    """The decoder of `card.method`, built from weights.npz's arrays (checked against the card)."""
    return methods.decoder_class(card.method, where).from_arrays(card, arrays)


def load(folder: str | Path):
    """(card, decoder) of a model directory; ModelError names the problem."""
    card, arrays = model_dir.load(folder)
    return card, from_arrays(card, arrays, str(folder))


class DecodeStage(Stage):
    """(N, bins) float32 window -> (H, W) float32 frame, 0-255 scale."""

    name = "decode"

    def __init__(self, card: ModelCard, decoder):
        self.card = card
        self.decoder = decoder
        self.in_spec = Spec(np.float32, card.in_shape)
        self.out_spec = Spec(np.float32, card.frame_shape)

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        self.decoder.predict_window(inp, out)
