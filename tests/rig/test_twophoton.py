"""The virtual two-photon microscope: determinism, formats, ground truth, speed."""


import numpy as np
import pytest

from rtdecode.errors import StageError
from rtdecode.extract.rois import load_suite2p
from rtdecode.rig.twophoton import MAX_COUNT, Microscope

SHAPE = (128, 128)


def small(seed=0, **kw):
    return Microscope(40, seed=seed, frame_shape=SHAPE, **kw)


def test_same_seed_same_frames_and_reset_replays():
    a, b = small(3), small(3)
    spikes = a.poisson_spikes(20, seed=1)
    movie = a.render_movie(spikes)
    np.testing.assert_array_equal(movie, b.render_movie(spikes))
    a.reset()
    np.testing.assert_array_equal(movie, a.render_movie(spikes))
    assert not np.array_equal(movie, small(4).render_movie(spikes))
    a.reset(seed=99)  # new time course, same cells
    other = a.render_movie(spikes)
    assert not np.array_equal(movie, other)
    assert a.ypix[0].tolist() == b.ypix[0].tolist()


def test_frames_and_truth_have_documented_shapes_and_dynamics():
    m = small(1, motion_px=2.0)
    spikes = m.poisson_spikes(50, rate_hz=3.0, seed=2)
    frame = m.render(spikes[0])
    assert frame.dtype == np.uint16 and frame.shape == SHAPE
    movie = m.render_movie(spikes[1:])
    assert movie.dtype == np.uint16 and movie.shape == (49, *SHAPE) and movie.max() <= MAX_COUNT
    tr = m.truth
    for k in ("spikes", "calcium", "F"):
        assert tr[k].shape == (50, 40) and tr[k].dtype == np.float32
    assert tr["shifts"].shape == (50, 2) and tr["shifts"].dtype == np.float32
    assert np.all(np.abs(tr["shifts"]) <= 2) and np.all(tr["shifts"] == np.round(tr["shifts"]))
    assert np.unique(tr["shifts"], axis=0).shape[0] > 1  # it does move
    # c_t = gamma * c_(t-1) + s_t and F = base * (1 + amp * c)
    c = tr["calcium"]
    np.testing.assert_allclose(c[1:], m.gamma * c[:-1] + tr["spikes"][1:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tr["F"], m.base * (1 + m.amp * c), rtol=1e-5)


def test_motion_follows_the_roll_convention():
    # Without noise, a frame at shift (dy, dx) equals the unshifted clean image rolled by it
    # (away from the border, where the canvas shows tissue moving in instead of wrapping).
    m = small(2, motion_px=2.0, gain=0.0, drift=0.0, neuropil_cv=0.0, neuropil_pop=0.0)
    zero = np.zeros(40)
    for _ in range(30):
        frame = m.render(zero).astype(np.float32)
        dy, dx = m.truth["shifts"][-1].astype(int)
        expected = np.roll(np.rint(m.mean_image), (dy, dx), axis=(0, 1))
        np.testing.assert_allclose(frame[4:-4, 4:-4], expected[4:-4, 4:-4], atol=1)


def test_bad_spikes_raise():
    m = small()
    with pytest.raises(StageError, match="shape"):
        m.render(np.zeros(39))
    with pytest.raises(StageError, match=">= 0"):
        m.render(np.full(40, np.nan))


def test_suite2p_files_round_trip(tmp_path):
    m = small(5)
    m.save_rois(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"stat.npy", "iscell.npy", "ops.npy"}
    stat = np.load(tmp_path / "stat.npy", allow_pickle=True)
    assert len(stat) == 40 and stat[0]["npix"] == len(stat[0]["ypix"]) and stat[0]["lam"].dtype == np.float32
    ops = np.load(tmp_path / "ops.npy", allow_pickle=True).item()
    assert (ops["Ly"], ops["Lx"]) == SHAPE and ops["meanImg"].shape == SHAPE and ops["fs"] == 30.0
    iscell = np.load(tmp_path / "iscell.npy")
    assert iscell.shape == (40, 2) and np.all(iscell[:, 0] == 1)

    rois = load_suite2p(tmp_path)
    assert rois.n == 40 and rois.frame_shape == SHAPE
    for i in (0, 17, 39):
        row = rois.footprints[[i], :].toarray().ravel()
        expected = np.zeros(SHAPE[0] * SHAPE[1])
        expected[m.ypix[i] * SHAPE[1] + m.xpix[i]] = m.lam[i] / m.lam[i].sum()
        np.testing.assert_allclose(row, expected, atol=1e-6)
    # footprints stay >= 8 px from the border
    ys, xs = np.concatenate(m.ypix), np.concatenate(m.xpix)
    assert ys.min() >= 8 and xs.min() >= 8 and ys.max() < SHAPE[0] - 8 and xs.max() < SHAPE[1] - 8


def test_save_truth_is_pickle_free(tmp_path):
    m = small()
    m.render_movie(m.poisson_spikes(5))
    m.save_truth(tmp_path)
    for k in ("calcium", "F", "shifts", "spikes"):
        a = np.load(tmp_path / f"{k}.npy", allow_pickle=False)
        assert a.shape[0] == 5
