"""End to end against the virtual microscope's ground truth: raw frames -> build_chain -> traces."""

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter1d

from rtdecode.extract import build_chain, default_spec, extract_movie, load_suite2p
from rtdecode.rig.twophoton import Microscope

N_CELLS, T = 200, 300  # 10 s at 30 Hz; the values noted "measured" below hold at this length


def rowcorr(a, b):
    """Per-row Pearson correlation of two (n, T) arrays."""
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-30)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    m = Microscope(N_CELLS, seed=5, frame_shape=(256, 256))
    movie = m.render_movie(m.poisson_spikes(T, rate_hz=2.0, seed=1))
    folder = tmp_path_factory.mktemp("plane0")
    m.save_rois(folder)
    rois = load_suite2p(folder)
    # The ROIs live in the coordinates of suite2p's meanImg, so that is the reference.
    reference = np.load(folder / "ops.npy", allow_pickle=True).item()["meanImg"]
    runs = {r: extract_movie(build_chain(default_spec(r=r), rois, reference, fps=m.fps), movie) for r in (0.0, 0.7)}
    return m.truth, rois, reference, movie, runs


def test_outputs_have_documented_shapes(session):
    _, _, _, _, runs = session
    res = runs[0.7]
    for k in ("F", "Fneu", "dff", "activity"):
        assert res[k].shape == (N_CELLS, T) and res[k].dtype == np.float32
        assert np.all(np.isfinite(res[k]))
    assert res["shifts"].shape == (T, 2) and res["activity"].min() >= 0


def test_registration_recovers_the_applied_motion(session):
    truth, _, _, _, runs = session
    assert np.unique(truth["shifts"], axis=0).shape[0] > 5
    assert np.abs(runs[0.7]["shifts"] - truth["shifts"]).max() <= 0.5


def test_corrected_fluorescence_tracks_true_fluorescence(session):
    truth, _, _, _, runs = session
    res = runs[0.7]
    c = rowcorr(res["F"] - 0.7 * res["Fneu"], truth["F"].T)
    assert np.median(c) > 0.95 and np.percentile(c, 5) > 0.85  # measured 0.98 and ~0.95
    assert np.median(rowcorr(res["dff"], truth["F"].T)) > 0.9


def test_neuropil_correction_matters(session):
    truth, _, _, _, runs = session
    raw = rowcorr(runs[0.0]["F"], truth["F"].T)
    corrected = rowcorr(runs[0.7]["F"] - 0.7 * runs[0.7]["Fneu"], truth["F"].T)
    assert np.median(corrected) - np.median(raw) > 0.02  # measured ~0.04
    assert np.mean(corrected > raw) > 0.9
    assert np.min(corrected) - np.min(raw) > 0.1  # the worst-contaminated cells gain most


def test_activity_tracks_true_spikes(session):
    truth, _, _, _, runs = session
    spikes = truth["spikes"].T
    act = runs[0.7]["activity"]
    smooth_spikes = gaussian_filter1d(spikes, 1.0, axis=1)
    both_smoothed = rowcorr(gaussian_filter1d(act, 1.0, axis=1), smooth_spikes)
    assert np.median(both_smoothed) > 0.85  # measured ~0.94
    # Unsmoothed activity against smoothed spikes is capped by the smoothing itself (~0.75).
    assert np.median(rowcorr(act, smooth_spikes)) > 0.6
    # A shuffle in time would score ~0: the bar is meaningful.
    assert np.median(rowcorr(gaussian_filter1d(act[:, ::-1], 1.0, axis=1), smooth_spikes)) < 0.2


def test_extract_movie_is_the_live_path(session):
    _, rois, reference, movie, runs = session
    chain = build_chain(default_spec(r=0.7), rois, reference)
    chain.warm_up()
    live = np.stack([chain.process(f).copy() for f in movie[:50]], axis=1)
    np.testing.assert_array_equal(live, runs[0.7]["activity"][:, :50])
