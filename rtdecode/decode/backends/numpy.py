"""numpy backend: the model's own in-process decoder (`predict_window`), no exported graph needed.

For a ridge model this is NumPy (BLAS) on the CPU; for the encoder-based methods the decoder's
`predict_window` runs its torch network eagerly. It always loads when the model does, so a rig
file lists it last as the fallback that needs nothing compiled.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtdecode import decode
from rtdecode.decode import model as model_dir_files
from rtdecode.decode.backends import Backend, shapes
from rtdecode.decode.card import ModelCard

log = logging.getLogger(__name__)


class NumpyBackend(Backend):
    name = "numpy"

    def __init__(self, model_dir: Path, card: ModelCard):
        _, arrays = model_dir_files.load(model_dir)
        self.card = card
        self.in_shape, self.out_shape = shapes(card)
        self.decoder = decode.from_arrays(card, arrays, str(model_dir))

    def run(self, window: np.ndarray, out: np.ndarray) -> None:
        self.decoder.predict_window(window, out)

    def describe(self) -> dict:
        return {"backend": self.name, "runtime": f"{type(self.decoder).__name__}.predict_window (in-process)",
                "device": "cpu", "method": self.card.method}


def load(model_dir, card: ModelCard, **options) -> NumpyBackend:
    if options:
        log.debug("numpy backend: ignoring options %s", sorted(options))
    return NumpyBackend(Path(model_dir), card)
