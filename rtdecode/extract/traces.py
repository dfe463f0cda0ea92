"""Per-ROI fluorescence with neuropil subtraction."""

from __future__ import annotations

import logging
import math
from typing import Optional

import numpy as np
from pydantic import Field
from scipy import sparse

from rtdecode.errors import ConfigError
from rtdecode.extract import kernels as _k
from rtdecode.extract.rois import Rois, cap_neuropil
from rtdecode.stage import Spec, Stage, StageOptions

log = logging.getLogger(__name__)

try:  # scipy's own C++ CSR mat-vec, accumulating into a buffer we own (no per-frame allocation)
    from scipy.sparse._sparsetools import csr_matvec as _csr_matvec
except ImportError:  # pragma: no cover - private module moved: fall back to the public product
    _csr_matvec = None

BACKENDS = ("scipy", "numba", "numpy")


class Traces(Stage):
    """float32 (H, W) registered frame -> float32 (n,) neuropil-corrected F = F_roi - r * F_neu.

    F_roi is the lam-weighted mean over each footprint and F_neu the mean over its neuropil
    annulus, in frame counts. After each frame `F` and `Fneu` (n,) hold those two of that frame
    (overwritten next frame; copy them to keep them).

    backend: "scipy" (default, fastest measured: scipy's CSR kernel writing into a preallocated
    buffer), "numba" (a Numba CSR loop: slower in a one-off timing, not saved; kept for comparison,
    as REFERENCES E found) or "numpy" (the reference: `weights @ frame`, which allocates its result).
    """

    name = "traces"
    history = 0

    class Options(StageOptions):
        r: float = Field(0.7, ge=0.0, le=1.0, description="neuropil subtraction factor: F - r * Fneu")
        max_neuropil_px: Optional[int] = Field(
            None, ge=1, description="each ROI's neuropil annulus sampled down to at most this many pixels (evenly "
                                    "spaced): faster, at some cost in accuracy; default: every pixel")

    @classmethod
    def from_options(cls, ctx, in_spec, opts: "Traces.Options") -> "Traces":
        """ctx.rois' traces of the registered frame."""
        rois = ctx.rois if opts.max_neuropil_px is None else cap_neuropil(ctx.rois, opts.max_neuropil_px)
        return cls(rois, r=opts.r, backend="scipy" if ctx.fast else "numpy")

    def taps(self, out):
        """'F', 'Fneu': each ROI's fluorescence and neuropil of the last frame."""
        return {"F": (lambda: self.F, (self.n,), "float32"), "Fneu": (lambda: self.Fneu, (self.n,), "float32")}

    def __init__(self, rois: Rois, r: float = 0.7, backend: str = "scipy"):
        if backend not in BACKENDS:
            raise ConfigError(f"traces: backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "scipy" and _csr_matvec is None:
            backend = "numpy"
        self.backend = backend
        if not (math.isfinite(r) and r >= 0):
            raise ConfigError(f"traces: neuropil coefficient r must be finite and >= 0, got {r}")
        self.r = float(r)
        self.n = rois.n
        self.rois = rois  # the masks in use (recorded with a session)
        self.in_spec = Spec(np.float32, rois.frame_shape)
        self.out_spec = Spec(np.float32, (self.n,))
        # One stacked matrix: a single pass over the frame gives both F and Fneu.
        self._weights = sparse.vstack([rois.footprints, rois.neuropil], format="csr").astype(np.float32)
        self.F = np.zeros(self.n, np.float32)
        self.Fneu = np.zeros(self.n, np.float32)
        w = self._weights
        self._indptr = w.indptr.astype(np.int32)
        self._indices = w.indices.astype(np.int32)
        self._data = np.ascontiguousarray(w.data, np.float32)
        self._both = np.zeros(2 * self.n, np.float32)
        self._r32 = np.float32(self.r)

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        if self.backend == "numpy":
            self._process_numpy(inp, out)
            return
        both = self._both
        x = inp.reshape(-1)
        if self.backend == "scipy":
            both.fill(0)
            _csr_matvec(2 * self.n, x.shape[0], self._indptr, self._indices, self._data, x, both)
        else:
            _k.csr_matvec(self._indptr, self._indices, self._data, x, both)
        self.F[:] = both[: self.n]
        self.Fneu[:] = both[self.n :]
        _k.combine_traces(self.F, self.Fneu, self._r32, out)

    def _process_numpy(self, inp: np.ndarray, out: np.ndarray) -> None:
        """The NumPy/SciPy reference."""
        both = self._weights @ inp.reshape(-1)  # scipy allocates this (2n,) result
        np.copyto(self.F, both[: self.n])
        np.copyto(self.Fneu, both[self.n :])
        np.multiply(self.Fneu, -self.r, out=out)
        out += self.F

    def reset(self) -> None:
        self.F[:] = 0
        self.Fneu[:] = 0
