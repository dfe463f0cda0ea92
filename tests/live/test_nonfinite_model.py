"""Issue 27, class 6: a model with NaN / inf weights or a zero `act_std` fails at load with a
ModelError that says what to do (not a session decoding NaN on every frame); NaN is not the
recorder's "not yet decoded" marker (`decoded_valid` is), and old sessions read as before."""

import io
import json

import numpy as np
import pytest

from rtdecode import cli
from rtdecode.bench import hostile
from rtdecode.decode import model as model_dir
from rtdecode.errors import ModelError
from rtdecode.outputs import record
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session


def _spoil(folder, key, how):
    with np.load(folder / "weights.npz") as z:
        arrays = {k: z[k] for k in z.files}
    a = arrays[key].copy()
    if how == "nan":
        a.flat[3] = np.nan
    elif how == "inf":
        a.flat[0] = np.inf
    else:
        a.flat[1] = 0.0
    arrays[key] = a
    np.savez(folder / "weights.npz", **arrays)


@pytest.mark.parametrize("key,how", [("weights", "nan"), ("pixel_mean", "inf"), ("act_std", "zero"),
                                     ("act_mean", "nan")])
def test_run_refuses_a_non_finite_model_at_load(tmp_path, capsys, key, how):
    rig, _ = hostile._rig(tmp_path, "rtframe", hostile._free_port())
    _spoil(tmp_path / "model", key, how)
    rc = cli.main(["run", str(rig), "--record", str(tmp_path / "s"), "--seconds", "1"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert f"'{key}'" in err and "rtdecode fit" in err
    with pytest.raises(ModelError, match=key):
        model_dir.load(tmp_path / "model")


def test_not_yet_decoded_is_a_flag_not_nan(tmp_path):
    rec = Recorder(tmp_path / "s", 2, (2, 2), fps=10)
    nan = np.full((2, 2), np.nan, np.float32)
    rec.add(0, 0.0, np.zeros(2, np.float32), None, (-1, -1), (-1, -1), 0.0)  # window not yet full
    rec.add(1, 0.1, np.zeros(2, np.float32), nan, (-1, -1), (-1, -1), 0.0)  # a decoder that gave NaN
    rec.add(2, 0.2, np.zeros(2, np.float32), np.ones((2, 2), np.float32), (-1, -1), (-1, -1), 0.0)
    rec.close({"frames": 3})
    s = read_session(tmp_path / "s")
    assert not s["damaged"]
    assert s["arrays"]["decoded_valid"].tolist() == [False, True, True]


def test_a_session_recorded_before_the_flag_reads_as_before(tmp_path):
    rec = Recorder(tmp_path / "s", 2, (2, 2), fps=10)
    rec.add(0, 0.0, np.zeros(2, np.float32), None, (-1, -1), (-1, -1), 0.0)
    rec.add(1, 0.1, np.zeros(2, np.float32), np.ones((2, 2), np.float32), (-1, -1), (-1, -1), 0.0)
    rec.close({"frames": 2})
    chunk = tmp_path / "s" / "chunks" / "000000.npz"
    with np.load(chunk) as z:  # rewrite it as an older rtdecode did: no decoded_valid
        old = {k: z[k] for k in z.files if k != "decoded_valid"}
    buf = io.BytesIO()
    np.savez(buf, **old)
    chunk.write_bytes(buf.getvalue())
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    import hashlib

    end["chunks"][0]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (tmp_path / "s" / "end.json").write_text(json.dumps(end))
    s = read_session(tmp_path / "s")
    assert not s["damaged"], s["damaged"]
    assert s["arrays"]["decoded_valid"].tolist() == [False, True]
    assert "decoded_valid" in record.KEYS
