"""The latency histogram (rtdecode/latency.py)."""

import numpy as np
import pytest

from rtdecode.latency import Histogram


def test_histogram_percentiles_within_two_percent(rng):
    x = rng.exponential(0.002, 20000)
    h = Histogram()
    for v in x:
        h.add(float(v))
    for q in (50, 99):
        assert h.percentile(q) == pytest.approx(np.percentile(x, q), rel=0.02)
    assert h.n == x.size and h.max == pytest.approx(x.max())
