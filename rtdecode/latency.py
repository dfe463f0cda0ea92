"""Latency histograms: fixed log-spaced bins (2% wide) from 1 us to 100 s; constant memory."""

from __future__ import annotations

import math

import numpy as np

_LO, _RATIO = 1e-6, 1.02
_NBINS = int(math.ceil(math.log(1e2 / _LO) / math.log(_RATIO))) + 2


class Histogram:
    """Counts of durations (seconds). Percentiles are read at bin centres (within 1%)."""

    def __init__(self):
        self.counts = np.zeros(_NBINS, np.int64)
        self.n = 0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        i = 0 if seconds <= _LO else min(_NBINS - 1, 1 + int(math.log(seconds / _LO) / math.log(_RATIO)))
        self.counts[i] += 1
        self.n += 1
        if seconds > self.max:
            self.max = seconds

    def percentile(self, q: float) -> float:
        """q in 0-100 -> seconds (NaN if empty)."""
        if self.n == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.counts), math.ceil(q / 100 * self.n)))
        return _LO if i == 0 else _LO * _RATIO ** (i - 0.5)

    def summary_ms(self) -> dict:
        return {"p50": round(self.percentile(50) * 1e3, 4), "p99": round(self.percentile(99) * 1e3, 4),
                "max": round(self.max * 1e3, 4), "n": self.n}
