"""`rtdecode extract` offline: a rig movie on disk through the live chain into .npy files."""

import numpy as np
import pytest
import tifffile

from rtdecode.errors import ConfigError, RoiError, StageError
from rtdecode.cli import main
from rtdecode.extract.offline import load_movie
from rtdecode.rig.twophoton import Microscope


def test_extract_command_writes_the_documented_files(tmp_path):
    m = Microscope(30, seed=2, frame_shape=(96, 96), motion_px=2.0)
    movie = m.render_movie(m.poisson_spikes(80, seed=3))
    (tmp_path / "tp").mkdir()
    tifffile.imwrite(tmp_path / "tp" / "trial_0.tif", movie[:40])
    tifffile.imwrite(tmp_path / "tp" / "trial_1.tif", movie[40:])
    m.save_rois(tmp_path / "rois")
    assert main(["extract", str(tmp_path / "tp"), "--rois", str(tmp_path / "rois"),
                 "--out", str(tmp_path / "out"), "--crop", "64", "64"]) == 0
    for k in ("F", "Fneu", "dff", "activity"):
        a = np.load(tmp_path / "out" / f"{k}.npy")
        assert a.shape == (30, 80) and a.dtype == np.float32 and np.all(np.isfinite(a))
    sh = np.load(tmp_path / "out" / "shifts.npy")
    assert sh.shape == (80, 2)
    assert np.abs(sh - m.truth["shifts"]).max() <= 0.5


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such movie"):
        load_movie(tmp_path / "none.tif")
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    assert load_movie(tmp_path / "bad.npy").shape == (1, 4, 5)
    np.save(tmp_path / "bad4.npy", np.zeros((2, 4, 5, 6)))
    with pytest.raises(StageError, match="expected frames"):
        load_movie(tmp_path / "bad4.npy")
    m = Microscope(5, seed=1, frame_shape=(64, 64))
    m.save_rois(tmp_path / "rois")
    stat = np.load(tmp_path / "rois" / "stat.npy", allow_pickle=True)
    stat[0]["xpix"] = stat[0]["xpix"] + 200
    np.save(tmp_path / "rois" / "stat.npy", stat, allow_pickle=True)
    from rtdecode.extract.offline import extract_to_folder
    with pytest.raises(RoiError, match="outside"):
        extract_to_folder(np.zeros((3, 64, 64), np.uint16), tmp_path / "rois", tmp_path / "o")
