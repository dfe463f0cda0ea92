"""The activity ring the decoder reads its window from."""

import numpy as np

from rtdecode.extract.ring import ActivityRing


def test_ring_gives_oldest_bin_first():
    ring = ActivityRing(3, 4, fill=np.array([9, 9, 9], np.float32))
    out = ring.out_spec.empty()
    ring.process(np.array([1, 1, 1], np.float32), out)
    np.testing.assert_array_equal(out[0], [9, 9, 9, 1])
    for v in range(2, 7):
        ring.process(np.full(3, v, np.float32), out)
    np.testing.assert_array_equal(out[1], [3, 4, 5, 6])
    ring.reset()
    ring.process(np.zeros(3, np.float32), out)
    np.testing.assert_array_equal(out[2], [9, 9, 9, 0])
