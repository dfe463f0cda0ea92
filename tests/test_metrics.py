import numpy as np
import pytest

from rtdecode import metrics


def test_perfect_and_inverted_reconstructions(rng):
    truth = rng.uniform(0, 255, (60, 36, 64))
    mask = np.zeros((36, 64), bool)
    mask[10:20, 10:40] = True
    s = metrics.score([(truth * 0.5 + 3, truth)], mask)
    assert s["pixel_corr"] == pytest.approx(1.0) and s["frame_corr"] == pytest.approx(1.0)
    s = metrics.score([(-truth, truth)], mask)
    assert s["pixel_corr"] == pytest.approx(-1.0)


def test_first_30_frames_are_dropped_and_mask_respected(rng):
    truth = rng.uniform(0, 255, (50, 36, 64))
    rec = truth.copy()
    rec[:30] = rng.uniform(0, 255, (30, 36, 64))  # garbage in the skipped frames: no effect
    mask = np.zeros((36, 64), bool)
    mask[:, :32] = True
    rec[:, :, 32:] = 0  # garbage outside the mask: no effect on pixel_corr, visible in full frame
    s = metrics.score([(rec, truth)], mask)
    assert s["pixel_corr"] == pytest.approx(1.0)
    assert s["pixel_corr_full"] < 0.9


def test_mean_over_trials_and_one_correlation_per_trial(rng):
    a = rng.normal(size=(40, 4, 4))
    b = rng.normal(size=(40, 4, 4))
    s = metrics.score([(a, a), (b, -b)], None)
    assert s["pixel_corr"] == pytest.approx(0.0) and s["trials"] == 2


def test_shape_mismatch_is_an_error(rng):
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.score([(np.zeros((40, 4, 4)), np.zeros((40, 4, 5)))], None)
