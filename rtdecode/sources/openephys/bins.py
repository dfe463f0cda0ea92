"""The bin grid of the ephys live path: which sample numbers make up time bin k.

Bin k covers sample numbers [edge(k), edge(k+1)), edge(k) = origin + round(k * width), width =
bin_ms * fs / 1000 samples (a fractional width does not drift against stimulus frames). The Open
Ephys sources (`continuous`, `sorted_spikes`) keep the grid: they decide which samples or spikes
belong to which bin, which bins are complete and which are lost.
"""

from __future__ import annotations

import math

import numpy as np

from rtdecode.errors import ConfigError


class BinGrid:
    """Bin k covers sample numbers [edge(k), edge(k+1)); edge(k) = origin + round(k * width)."""

    def __init__(self, origin: int, width: float):
        if not width >= 1.0:
            raise ConfigError(f"extraction.ephys.bin_ms: a bin must hold at least one sample (got {width:.3g})")
        self.origin, self.width = int(origin), float(width)

    def edge(self, k: int) -> int:
        return self.origin + math.floor(k * self.width + 0.5)

    def edges(self, k0: int, k1: int) -> np.ndarray:
        """int64 edges of bins k0..k1 (k1 - k0 + 2 values)."""
        k = np.arange(k0, k1 + 2, dtype=np.float64)
        return self.origin + np.floor(k * self.width + 0.5).astype(np.int64)

    def index(self, s: int) -> int:
        """The bin holding sample s (negative before the origin)."""
        k = math.floor((s - self.origin) / self.width)
        while self.edge(k + 1) <= s:
            k += 1
        while self.edge(k) > s:
            k -= 1
        return k
