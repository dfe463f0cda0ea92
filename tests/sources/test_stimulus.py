"""StimulusSender over loopback, and stimulus-to-bin alignment."""

import numpy as np
import pytest

from rtdecode.errors import StageError
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.stimulus import StimulusSender, align_stimulus_to_bins


def test_stimulus_sender_publishes_stim_messages():
    with StimulusSender("tcp://127.0.0.1:*") as sender:
        ing = Ingest([sender.endpoint], topics=("stim", "stats"))
        try:
            assert sender.wait_subscriber(5)
            img = np.arange(12, dtype=np.uint8).reshape(3, 4)
            sender.flip(0, trial=3, image=img, t=100.0)
            sender.flip(1, trial=3, t=100.0166)
            sender.end()
            msgs = [ing.receive(5000) for _ in range(3)]
        finally:
            ing.close()
    assert [m.topic for m in msgs] == ["stim", "stim", "stats"]
    assert [m.header["frame"] for m in msgs[:2]] == [0, 1] and msgs[0].header["trial"] == 3
    assert msgs[0].t == 100.0 and [m.seq for m in msgs] == [0, 1, 2]
    np.testing.assert_array_equal(msgs[0].array, img)
    assert msgs[1].array.shape == (0,)
    assert ing.n_rejected == 0 and ing.dropped == 0


def test_stimulus_sender_rejects_bad_input():
    with StimulusSender() as sender:
        with pytest.raises(StageError):
            sender.flip(-1, trial=0)
        with pytest.raises(StageError):
            sender.flip(1.5, trial=0)


def test_stimulus_align_to_bins():
    flips = [1.0, 1.0167, 1.0333, 1.05]
    frames = [10, 11, 12, 13]
    bins = [0.5, 1.0, 1.01, 1.0167, 1.04, 1.06, 2.0]
    np.testing.assert_array_equal(align_stimulus_to_bins(flips, frames, bins), [-1, 10, 10, 11, 12, 13, 13])
    np.testing.assert_array_equal(align_stimulus_to_bins(flips, frames, bins, end_time=1.0667),
                                  [-1, 10, 10, 11, 12, 13, -1])
    assert align_stimulus_to_bins([], [], [1.0]).tolist() == [-1]
    with pytest.raises(StageError):
        align_stimulus_to_bins([1.0, 0.5], [0, 1], [1.0])
    with pytest.raises(StageError):
        align_stimulus_to_bins([1.0], [0, 1], [1.0])


def test_stimulus_align_matches_brute_force(rng):
    flips = np.cumsum(rng.uniform(0.01, 0.03, 200))
    frames = np.arange(200) + 1000
    bins = rng.uniform(-0.1, flips[-1] + 0.1, 500)
    got = align_stimulus_to_bins(flips, frames, bins)
    for b, g in zip(bins, got):
        shown = [f for t, f in zip(flips, frames) if t <= b]
        assert g == (shown[-1] if shown else -1)
