"""Per-ROI fluorescence with neuropil subtraction."""

from __future__ import annotations

import logging
import math

import numpy as np
from scipy import sparse

from rtdecode.errors import ConfigError
from rtdecode.extract.rois import Rois
from rtdecode.stage import Spec, Stage

log = logging.getLogger(__name__)


class Traces(Stage):
    """float32 (H, W) registered frame -> float32 (n,) neuropil-corrected F = F_roi - r * F_neu.

    F_roi is the lam-weighted mean over each footprint and F_neu the mean over its neuropil
    annulus, in frame counts. After each frame `F` and `Fneu` (n,) hold those two of that frame
    (overwritten next frame; copy them to keep them).
    """

    name = "traces"
    history = 0

    def __init__(self, rois: Rois, r: float = 0.7):
        if not (math.isfinite(r) and r >= 0):
            raise ConfigError(f"traces: neuropil coefficient r must be finite and >= 0, got {r}")
        self.r = float(r)
        self.n = rois.n
        self.in_spec = Spec(np.float32, rois.frame_shape)
        self.out_spec = Spec(np.float32, (self.n,))
        # One stacked matrix: a single pass over the frame gives both F and Fneu.
        self._weights = sparse.vstack([rois.footprints, rois.neuropil], format="csr").astype(np.float32)
        self.F = np.zeros(self.n, np.float32)
        self.Fneu = np.zeros(self.n, np.float32)

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        both = self._weights @ inp.reshape(-1)  # scipy allocates this (2n,) result
        np.copyto(self.F, both[: self.n])
        np.copyto(self.Fneu, both[self.n :])
        np.multiply(self.Fneu, -self.r, out=out)
        out += self.F

    def reset(self) -> None:
        self.F[:] = 0
        self.Fneu[:] = 0
