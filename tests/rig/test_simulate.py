"""`rtdecode simulate` with its raw outputs: two-photon TIFFs with suite2p ROIs, and ephys spikes."""

import numpy as np
import tifffile

from rtdecode.cli import main
from rtdecode.extract.rois import load_suite2p


def test_simulate_writes_dataset_twophoton_and_ephys(tmp_path):
    out = tmp_path / "mouse"
    assert main(["simulate", "--out", str(out), "--neurons", "60", "--train-trials", "2", "--test-trials", "1",
                 "--trial-frames", "40", "--two-photon-trials", "1", "--ephys"]) == 0
    assert np.load(out / "data" / "videos" / "2.npy").shape == (36, 64, 40)
    movie = tifffile.imread(out / "twophoton" / "trial_0.tif")
    assert movie.shape == (40, 512, 512) and movie.dtype == np.uint16
    assert load_suite2p(out / "twophoton" / "rois").n == 60
    assert np.load(out / "twophoton" / "truth" / "shifts.npy").shape == (40, 2)
    from rtdecode.rig import VirtualRig

    rig = VirtualRig(60, 0, 2, 1, 40)  # the realistic rig's responses are deconvolved; ephys has its spikes
    spikes = np.concatenate([rig.trial(i).spikes.T for i in range(3)], axis=1)
    resp = np.load(out / "data" / "responses" / "0.npy")
    assert resp.min() >= 0 and 0.1 < (resp == 0).mean() < 0.9
    times = np.load(out / "ephys" / "spike_times.npy")
    units = np.load(out / "ephys" / "spike_clusters.npy")
    assert times.size == spikes.sum() and np.all(np.diff(times.astype(np.int64)) >= 0)
    np.testing.assert_array_equal(np.bincount(units, minlength=60), spikes.sum(1))
    assert np.load(out / "ephys" / "cluster_channels.npy").max() < 384


def test_simulate_modality_spikes_writes_the_draws_spike_counts(tmp_path):
    from rtdecode.rig import VirtualRig

    out = tmp_path / "mouse_spikes"
    assert main(["simulate", "--out", str(out), "--neurons", "40", "--train-trials", "2", "--test-trials", "1",
                 "--trial-frames", "30", "--modality", "spikes"]) == 0
    rig = VirtualRig(40, 0, 2, 1, 30)
    for i in range(3):
        tr = rig.trial(i)
        resp = np.load(out / "data" / "responses" / f"{i}.npy")
        np.testing.assert_array_equal(resp, tr.spikes.T)  # the counts themselves, not the deconvolved responses
        assert not np.array_equal(resp, tr.responses.T)
    assert (out / "meta" / "rig" / "modality.txt").read_text().strip() == "spikes"


def test_simulate_rejects_an_unknown_modality(tmp_path):
    import pytest

    with pytest.raises(SystemExit):
        main(["simulate", "--out", str(tmp_path / "m"), "--modality", "voltage"])
