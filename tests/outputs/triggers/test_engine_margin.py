"""A frame's age includes the clock estimate's margin (issue 27: a 120-s overload let the estimate
creep 12 ms, and one trigger fired on a frame 50.2 ms old against max_age 50 ms)."""

import time

import numpy as np

from rtdecode.outputs.triggers import CallableRule, TriggerEngine


def _engine():
    return TriggerEngine([CallableRule("always", lambda f: 1.0, threshold=0.5, refractory_s=0.0)], [], max_lag_s=1.0)


def test_a_frame_within_max_age_by_its_estimate_but_not_with_the_margin_does_not_fire():
    img = np.zeros((4, 4), np.float32)
    eng = _engine()
    now = time.perf_counter()
    assert eng.on_decoded(img, 0.0, 0.001, now, acquired=now - 0.045, max_age_s=0.05) == 1
    assert eng.on_decoded(img, 0.0, 0.001, now, acquired=now - 0.045, max_age_s=0.05, age_margin=0.012) == 0
    assert eng.suppressed_frames["stale"] == 1
