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


def test_live_score_equals_the_offline_pixel_corr_without_keeping_frames():
    from rtdecode.metrics import LiveScore, trial_scores

    rng = np.random.default_rng(0)
    live, offline = LiveScore(), []
    for trial in (4, 7):
        truth = rng.uniform(0, 255, (60, 6, 8)).astype(np.float32)
        recon = (0.3 * truth + rng.normal(0, 40, truth.shape)).astype(np.float32)
        for k in range(60):
            live.add(trial, k, recon[k], truth[k].astype(np.uint8).astype(np.float32))
        offline.append(trial_scores(recon, truth.astype(np.uint8).astype(np.float32), None)["pixel_corr"])
    s = live.summary()
    assert s["trials"] == 2 and s["frames"] == 2 * 30  # the first 30 frames of each trial left out
    assert s["pixel_corr"] == pytest.approx(np.mean(offline), abs=1e-9)
    mask = np.zeros((6, 8), bool)
    mask[1:4, 2:6] = True
    m = LiveScore(mask=mask, max_trials=1)
    m.add(0, 40, np.ones((6, 8)), np.ones((6, 8)))  # constant: no correlation, not a number
    m.add(1, 40, np.ones((6, 8)), np.ones((6, 8)))
    out = m.summary()
    assert out["pixel_corr"] is None and out["trials_dropped"] == 1 and out["mask"] == 12
