"""suite2p's pickled stat.npy / ops.npy: loaded through a restricted unpickler; a crafted file is
refused (and runs nothing), with an error that says how to convert the folder."""

import io
import pickle

import numpy as np
import pytest

from rtdecode.errors import RoiError
from rtdecode.extract import safe_npy
from rtdecode.extract.rois import load_suite2p
from rtdecode.rig.twophoton import Microscope


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch /tmp/rtdecode_pwned_by_stat_npy",))


def _header():
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return buf.getvalue()


def test_suite2p_folders_written_by_the_rig_load(tmp_path):
    Microscope(20, seed=1, frame_shape=(64, 64)).save_rois(tmp_path / "rois")
    load_suite2p(tmp_path / "rois")  # through the restricted unpickler
    stat = safe_npy.load(tmp_path / "rois" / "stat.npy")
    assert stat.dtype == object and len(stat) == 20 and isinstance(stat[0], dict) and "ypix" in stat[0]


def test_a_crafted_stat_npy_is_refused_and_runs_nothing(tmp_path):
    import os

    marker = "/tmp/rtdecode_pwned_by_stat_npy"
    if os.path.exists(marker):
        os.remove(marker)
    Microscope(5, seed=1, frame_shape=(32, 32)).save_rois(tmp_path / "rois")
    evil = np.empty(1, object)
    evil[0] = {"ypix": _Evil()}
    path = tmp_path / "rois" / "stat.npy"
    path.write_bytes(b"")
    with open(path, "wb") as fh:
        np.lib.format.write_array(fh, evil, allow_pickle=True)
    with pytest.raises(RoiError, match="posix.system|os.system") as info:
        load_suite2p(tmp_path / "rois")
    assert "convert it" in str(info.value)
    assert not os.path.exists(marker)


def test_a_plain_array_is_loaded_without_pickle(tmp_path):
    np.save(tmp_path / "a.npy", np.arange(5))
    np.testing.assert_array_equal(safe_npy.load(tmp_path / "a.npy"), np.arange(5))
    (tmp_path / "b.npy").write_bytes(b"not npy")
    with pytest.raises(ValueError, match="cannot read"):
        safe_npy.load(tmp_path / "b.npy")


def test_ops_npy_dict_loads(tmp_path):
    ops = {"Ly": 32, "Lx": 40, "meanImg": np.ones((32, 40), np.float32), "fs": 30.0, "save_path0": "x",
           "nested": {"a": [1, 2.5, "s", None, (1, 2)]}}
    np.save(tmp_path / "ops.npy", ops, allow_pickle=True)
    got = safe_npy.load(tmp_path / "ops.npy").item()
    assert got["Ly"] == 32 and got["meanImg"].shape == (32, 40) and got["nested"]["a"][4] == (1, 2)


def test_pickle_protocol_5_arrays_load(tmp_path):
    arr = np.empty(1, object)
    arr[0] = {"lam": np.ones(3, np.float32)}
    # np.save with allow_pickle uses protocol 3; a protocol-5 file (written by newer tools) must load too
    raw = pickle.dumps(arr, protocol=5)
    (tmp_path / "p5.npy").write_bytes(_header() + raw)
    got = safe_npy.load(tmp_path / "p5.npy")
    np.testing.assert_array_equal(got[0]["lam"], np.ones(3, np.float32))
