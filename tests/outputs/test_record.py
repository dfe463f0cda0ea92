"""Session recording: chunks are whole on disk; kill -9 loses at most the last second."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.errors import RecordError
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session, summarize


def test_records_round_trip_and_clean_stop(tmp_path, rng):
    rec = Recorder(tmp_path / "s", 5, (4, 6), meta={"note": "x"}, chunk_s=1.0, fps=10)
    acts = rng.normal(size=(25, 5)).astype(np.float32)
    for k in range(25):
        rec.add(k, 100 + k / 10, acts[k], None if k < 3 else np.full((4, 6), k, np.float32), (0, k), (0, k - 3), 0.001)
    rec.trigger({"rule": "test", "t": 1.0})
    rec.close({"frames": 25})
    s = read_session(tmp_path / "s")
    np.testing.assert_array_equal(s["arrays"]["activity"], acts)
    assert np.isnan(s["arrays"]["decoded"][:3]).all() and s["arrays"]["decoded"][10, 0, 0] == 10
    assert len(list((tmp_path / "s" / "chunks").glob("*.npz"))) == 3  # 10 frames per chunk at 10 Hz
    summary = summarize(s)
    assert summary["frames"] == 25 and summary["triggers"] == 1 and summary["gaps"] == 0
    assert summary["clean_stop"] and summary["ok"]


def test_existing_or_unwritable_folder_is_refused(tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "chunks").mkdir()
    with pytest.raises(RecordError, match="already holds a session"):
        Recorder(tmp_path / "s", 2, (2, 2))
    (tmp_path / "file").write_text("")
    with pytest.raises(RecordError, match="cannot create"):
        Recorder(tmp_path / "file" / "s", 2, (2, 2))


def test_inspect_reports_damage_with_nonzero_exit(tmp_path, capsys):
    rec = Recorder(tmp_path / "s", 2, (2, 2), chunk_s=1.0, fps=5)
    for k in range(12):
        if k != 7:  # a frame lost upstream: a gap
            rec.add(k, k / 5, np.zeros(2, np.float32), np.zeros((2, 2), np.float32), (-1, -1), (-1, -1), 0.0)
    rec.close()
    assert main(["inspect", str(tmp_path / "s"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["frames"] == 11 and out["gaps"] == 1 and out["ok"]
    (tmp_path / "s" / "chunks" / "000001.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["inspect", str(tmp_path / "s")]) == 1
    assert "damaged: 000001.npz" in capsys.readouterr().out


def test_kill_9_mid_session_loses_at_most_one_second(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "rtdecode", "demo", "--headless", "--out", str(out),
                             "--seconds", "60", "--neurons", "80", "--train-trials", "3"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    chunks = out / "session" / "chunks"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and len(list(chunks.glob("*.npz"))) < 3:
            time.sleep(0.2)
        assert len(list(chunks.glob("*.npz"))) >= 3, "the live block never started recording"
        time.sleep(1.7)
    finally:
        killed_at = time.time()
        os.killpg(proc.pid, signal.SIGKILL)  # the demo and its sender child, no chance to clean up
        proc.wait(timeout=30)
    s = read_session(out / "session")
    summary = summarize(s)
    assert summary["ok"] and not summary["clean_stop"] and summary["gaps"] == 0
    t = s["arrays"]["t"]  # sender timestamps of recorded frames, same clock as ours
    assert killed_at - t[-1] <= 1.0 + 0.2  # one chunk plus the transport and scheduling slack


def test_a_recorded_session_exports_to_sensorium_and_fits(tmp_path):
    """The live block of a small demo, recorded, becomes a dataset `rtdecode fit` trains on."""
    from rtdecode.offline.dataset import Dataset
    from rtdecode.live.demo import run_demo
    from rtdecode.rig import VirtualRig

    run_demo(tmp_path / "demo", seconds=20, n_neurons=60, n_train=3, seed=4, speed=4.0,
             frame_shape=(128, 128), progress=False)
    session = tmp_path / "demo" / "session"
    assert main(["export", str(session), "--out", str(tmp_path / "ds")]) == 0
    ds = Dataset(tmp_path / "ds")
    assert ds.n_neurons == 60 and ds.trials("train") == ["0", "1"]
    rig = VirtualRig(60, 4, n_train=3, n_oracle=2)
    for k, trial in enumerate(rig.trials("oracle")):
        tr = ds.load(str(k))
        assert tr.video.shape == (300, 36, 64) and tr.responses.shape == (60, 300)
        # The recorded stimulus is the rig's movie (sent as uint8), frame for frame.
        np.testing.assert_allclose(tr.video, np.clip(rig.trial(trial).movie + 0.5, 0, 255).astype(np.uint8))
    s = read_session(session)
    np.testing.assert_array_equal(ds.load("0").responses, s["arrays"]["activity"][:300].T)
    assert main(["fit", str(session), "--out", str(tmp_path / "m")]) == 0
    assert json.loads((tmp_path / "m" / "card.json").read_text())["neurons"] == 60
