"""ROI loading and validation."""

import numpy as np
import pytest

from rtdecode.errors import RoiError
from rtdecode.extract.rois import from_footprints, load_suite2p

SHAPE = (64, 64)


def disk(cy, cx, r=4):
    y, x = np.mgrid[cy - r : cy + r + 1, cx - r : cx + r + 1]
    inside = (y - cy) ** 2 + (x - cx) ** 2 <= r * r
    return y[inside], x[inside], np.exp(-((y[inside] - cy) ** 2 + (x[inside] - cx) ** 2) / 8.0)


def three_rois():
    return list(zip(*[disk(20, 20), disk(20, 40), disk(44, 30)]))


def test_footprints_are_normalised_and_neuropil_avoids_cells():
    ys, xs, lams = three_rois()
    rois = from_footprints(ys, xs, lams, SHAPE)
    assert rois.n == 3 and rois.frame_shape == SHAPE
    np.testing.assert_allclose(rois.footprints.sum(axis=1), 1, rtol=1e-6)
    np.testing.assert_allclose(rois.neuropil.sum(axis=1), 1, rtol=1e-6)
    cells = np.zeros(SHAPE, bool)
    for y, x in zip(ys, xs):
        cells[y, x] = True
    near = np.zeros(SHAPE, bool)  # within 2 px of any cell pixel
    for dy in range(-2, 3):
        for dx in range(-2, 3):
            if dy * dy + dx * dx <= 4:
                near |= np.roll(cells, (dy, dx), axis=(0, 1))
    for i in range(3):
        pix = rois.neuropil[[i], :].indices
        assert pix.size >= 150
        assert not near.ravel()[pix].any()
        w = rois.neuropil[[i], :].data
        np.testing.assert_allclose(w, w[0])  # uniform


def test_load_suite2p_keeps_only_cells_and_names_bad_rois(tmp_path):
    ys, xs, lams = three_rois()
    stat = np.empty(3, dtype=object)
    for i in range(3):
        stat[i] = {"ypix": ys[i], "xpix": xs[i], "lam": lams[i].astype(np.float32),
                   "med": [0, 0], "npix": len(ys[i])}
    stat[1]["ypix"] = stat[1]["ypix"] + 100  # out of the frame, but not a cell
    np.save(tmp_path / "stat.npy", stat, allow_pickle=True)
    np.save(tmp_path / "iscell.npy", np.array([[1, 0.9], [0, 0.2], [1, 0.8]]))
    ops = {"Ly": 64, "Lx": 64, "meanImg": np.zeros(SHAPE), "fs": 30.0}
    np.save(tmp_path / "ops.npy", ops, allow_pickle=True)
    rois = load_suite2p(tmp_path)
    assert rois.n == 2 and list(rois.index) == [0, 2]
    with pytest.raises(RoiError, match="ROI 1: pixels outside the 64x64 frame"):
        load_suite2p(tmp_path, only_cells=False)
    with pytest.raises(RoiError, match="disagrees"):
        load_suite2p(tmp_path, frame_shape=(32, 32))
    (tmp_path / "iscell.npy").unlink()
    with pytest.raises(RoiError, match="only_cells=False"):
        load_suite2p(tmp_path)
    with pytest.raises(RoiError, match="stat.npy not found"):
        load_suite2p(tmp_path / "nowhere")


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda y, x, w: (y[:0], x[:0], w[:0]), "ROI 2: empty footprint"),
        (lambda y, x, w: (y, x - 30, w), "ROI 2: pixels outside"),
        (lambda y, x, w: (y, x, w * np.nan), "ROI 2: lam has non-finite"),
        (lambda y, x, w: (y, x, w * 0), "ROI 2: lam sums to 0"),
        (lambda y, x, w: (y, x, -w), "ROI 2: lam has negative"),
        (lambda y, x, w: (y + 0.5, x, w), "ROI 2: ypix must hold whole pixel"),
        (lambda y, x, w: (y, x[:-1], w), "ROI 2: ypix, xpix and lam must be 1-D of equal length"),
    ],
)
def test_invalid_footprints_raise_naming_the_roi(break_it, message):
    ys, xs, lams = three_rois()
    ys, xs, lams = list(ys), list(xs), list(lams)
    ys[2], xs[2], lams[2] = break_it(ys[2], xs[2], lams[2])
    with pytest.raises(RoiError, match=message):
        from_footprints(ys, xs, lams, SHAPE)


def test_neuropil_cap_keeps_an_evenly_spread_uniform_sample():
    from rtdecode.extract.rois import cap_neuropil

    ys, xs, lams = three_rois()
    full = from_footprints(ys, xs, lams, SHAPE)
    capped = from_footprints(ys, xs, lams, SHAPE, max_neuropil_px=40)
    again = cap_neuropil(full, 40)
    assert (capped.footprints != full.footprints).nnz == 0
    for i in range(3):
        pix_full = full.neuropil[[i], :].indices
        pix = capped.neuropil[[i], :].indices
        assert pix.size == 40 and np.isin(pix, pix_full).all()
        np.testing.assert_array_equal(pix, again.neuropil[[i], :].indices)  # deterministic
        w = capped.neuropil[[i], :].data
        np.testing.assert_allclose(w, 1 / 40, rtol=1e-6)
        rows = pix // SHAPE[1]  # spread over the annulus, not bunched at one end
        full_rows = pix_full // SHAPE[1]
        assert rows.min() - full_rows.min() <= 2 and full_rows.max() - rows.max() <= 2
    assert cap_neuropil(full, 10_000) is full
    with pytest.raises(RoiError, match="max_neuropil_px"):
        cap_neuropil(full, 0)
