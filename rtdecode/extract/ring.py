"""The activity ring: the last `bins` activity vectors, the decoder's input window."""

from __future__ import annotations

import numpy as np

from rtdecode.stage import Spec, Stage


class ActivityRing(Stage):
    """(N,) float32 activity per frame -> (N, bins) float32 window, oldest bin first.

    Until `bins` frames have been seen the missing bins hold `fill` (the neurons' mean activity, so a
    z-scoring decoder sees zeros there).
    """

    name = "ring"

    def __init__(self, n: int, bins: int, fill: np.ndarray | None = None):
        self.history = bins
        self.in_spec = Spec(np.float32, (n,))
        self.out_spec = Spec(np.float32, (n, bins))
        self.fill = np.zeros(n, np.float32) if fill is None else np.asarray(fill, np.float32)
        self.buf = np.empty((n, bins), np.float32)
        self.pos = 0  # column the next frame is written to
        self.seen = 0
        self.reset()

    def reset(self) -> None:
        self.buf[:] = self.fill[:, None]
        self.pos = 0
        self.seen = 0

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        bins = self.history
        self.buf[:, self.pos] = inp
        self.pos = (self.pos + 1) % bins
        self.seen += 1
        # Unroll the circular buffer so column 0 is the oldest bin.
        k = bins - self.pos
        out[:, :k] = self.buf[:, self.pos:]
        out[:, k:] = self.buf[:, :self.pos]
