"""`rtdecode rois`: reading a calibration recording (ScanImage-style TIFF, .npy, a session's raw frames),
suite2p's detection written in the layout the rig file reads, and the errors a user meets."""

import sys

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.errors import DatasetError, DependencyError
from rtdecode.extract import safe_npy
from rtdecode.extract.rois import load_suite2p
from rtdecode.offline import detect_rois
from rtdecode.rig.twophoton import Microscope

SHAPE = (128, 128)


def movie(n_cells=30, frames=300, seed=3):
    """A small virtual-microscope movie (T, H, W) uint16 and its microscope (the true cells)."""
    scope = Microscope(n_cells, seed=seed, frame_shape=SHAPE, motion_px=1.0)
    return scope.render_movie(scope.poisson_spikes(frames, rate_hz=3.0, seed=seed)), scope


def test_read_frames_takes_tiffs_npy_and_checks_them(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    frames, _ = movie(frames=120)
    tifffile.imwrite(tmp_path / "a.tif", frames[:60])
    tifffile.imwrite(tmp_path / "b.tif", frames[60:])
    np.save(tmp_path / "m.npy", frames)
    got, about = detect_rois.read_frames([tmp_path / "a.tif", tmp_path / "b.tif"])
    assert got.dtype == np.int16 and got.shape == frames.shape
    assert np.array_equal(got, frames.astype(np.int16))  # in the order given, values kept (12-bit)
    assert [s["kind"] for s in about["inputs"]] == ["tiff", "tiff"]
    folder = tmp_path / "tiffs"
    folder.mkdir()
    for f in ("a.tif", "b.tif"):
        (folder / f).write_bytes((tmp_path / f).read_bytes())
    assert np.array_equal(detect_rois.read_frames([folder])[0], got)
    assert np.array_equal(detect_rois.read_frames([tmp_path / "m.npy"])[0], got)

    with pytest.raises(DatasetError, match="no such file"):
        detect_rois.read_frames([tmp_path / "missing.tif"])
    with pytest.raises(DatasetError, match="channel 2"):
        detect_rois.read_frames([tmp_path / "a.tif"], channel=2)
    np.save(tmp_path / "flat.npy", frames[0])
    with pytest.raises(DatasetError, match=r"expected frames \(T, H, W\)"):
        detect_rois.read_frames([tmp_path / "flat.npy"])
    np.save(tmp_path / "small.npy", frames[:, :64, :64])
    with pytest.raises(DatasetError, match="one field of view"):
        detect_rois.read_frames([tmp_path / "m.npy", tmp_path / "small.npy"])
    with pytest.raises(DatasetError, match="holds no raw frames"):
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "session.json").write_text("{}")
        detect_rois.read_frames([tmp_path / "s"])


def test_stat_is_written_as_plain_types_the_safe_reader_admits(tmp_path):
    stat = [{"ypix": np.array([1, 2]), "xpix": np.array([3, 3]), "lam": np.array([0.5, 1.0]), "med": [1.5, 3.0],
             "npix": np.int64(2), "skew": np.float32(1.5), "soma_crop": np.array([True, False]),
             "overlap": np.array([False, False]), "compact": 1.1}]
    np.save(tmp_path / "stat.npy", detect_rois.plain_stat(stat), allow_pickle=True)
    back = safe_npy.load(tmp_path / "stat.npy")
    assert set(back[0]) == {"ypix", "xpix", "lam", "med", "npix", "skew", "compact"}
    assert back[0]["ypix"].dtype == np.int32 and back[0]["lam"].dtype == np.float32
    assert type(back[0]["npix"]) is int and type(back[0]["skew"]) is float


def test_without_suite2p_the_error_says_which_extra_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "suite2p", None)  # import suite2p raises ImportError
    with pytest.raises(DependencyError, match=r"pip install -e '\.\[rois\]'"):
        detect_rois.import_suite2p()
    frames, _ = movie(frames=120)
    np.save(tmp_path / "m.npy", frames)
    assert main(["rois", str(tmp_path / "m.npy"), "--out", str(tmp_path / "r")]) == 1
    assert "pip install -e '.[rois]'" in capsys.readouterr().err


def test_bad_options_are_refused_before_suite2p_runs(tmp_path, capsys):
    frames, _ = movie(frames=50)
    np.save(tmp_path / "m.npy", frames)
    assert main(["rois", str(tmp_path / "m.npy"), "--out", str(tmp_path / "r")]) == 1
    assert "50 frames" in capsys.readouterr().err  # too short a movie
    np.save(tmp_path / "long.npy", np.concatenate([frames] * 3))
    assert main(["rois", str(tmp_path / "long.npy"), "--out", str(tmp_path / "r"), "--threshold", "1.5"]) == 1
    assert "between 0 and 1" in capsys.readouterr().err
    assert main(["rois", str(tmp_path / "m.npy"), "--out", str(tmp_path / "r"), "--planes", "1", "1"]) == 1
    assert "twice" in capsys.readouterr().err


def test_suite2p_finds_the_microscopes_cells_and_the_rig_file_reads_them(tmp_path, capsys):
    try:  # through rtdecode's import (a bare `import suite2p` fails beside the CPU build of torch)
        detect_rois.import_suite2p()
    except DependencyError as exc:
        pytest.skip(str(exc))
    tifffile = pytest.importorskip("tifffile")
    frames, scope = movie()
    tifffile.imwrite(tmp_path / "calibration.tif", frames)  # a plain stack: channel 1, plane 1
    out = tmp_path / "rois"
    assert main(["rois", str(tmp_path / "calibration.tif"), "--out", str(out), "--rigid", "--threshold", "0.3"]) == 0
    assert "cells (p >= 0.3)" in capsys.readouterr().out
    stat = safe_npy.load(out / "stat.npy")
    iscell = np.load(out / "iscell.npy", allow_pickle=False)
    ops = safe_npy.load(out / "ops.npy").item()
    assert iscell.shape == (len(stat), 2) and len(stat) > 0
    assert np.array_equal(iscell[:, 0] == 1, iscell[:, 1] >= 0.3)  # the threshold decides column 0
    assert (ops["Ly"], ops["Lx"]) == SHAPE and ops["meanImg"].shape == SHAPE and ops["threshold"] == 0.3
    rois = load_suite2p(out)  # what extraction.two_photon.rois reads
    assert rois.n == int(iscell[:, 0].sum()) and rois.frame_shape == SHAPE
    # most detected cells sit on a true cell (centre within 4 px of a true centre)
    med = np.array([s["med"] for s in stat[iscell[:, 0] == 1]], float)
    dist = np.linalg.norm(med[:, None, :] - scope.centres[None, :, :], axis=2).min(axis=1)
    assert np.mean(dist <= 4) >= 0.6, dist
