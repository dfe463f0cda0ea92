"""Recordings prove their integrity: `rtdecode inspect` reports missing, damaged and inconsistent
chunks, .tmp leftovers, sessions ended by error, and a full disk; exit 1, never a traceback."""

import errno
import json

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.outputs import record
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session, summarize


def _session(path, frames=30, fps=10, neurons=2, error=None):
    rec = Recorder(path, neurons, (2, 2), chunk_s=1.0, fps=fps)
    for k in range(frames):
        rec.add(k, k / fps, np.full(neurons, k, np.float32), np.zeros((2, 2), np.float32), (-1, -1), (-1, -1), 0.0)
    rec.close({"frames": frames}, error=error)
    return path


def _inspect(path, capsys):
    rc = main(["inspect", str(path)])
    return rc, capsys.readouterr().out


def test_a_clean_session_has_a_manifest_that_checks_out(tmp_path, capsys):
    s = _session(tmp_path / "s")
    end = json.loads((s / "end.json").read_text())
    assert [c["file"] for c in end["chunks"]] == ["000000.npz", "000001.npz", "000002.npz"]
    assert [(c["first"], c["last"], c["rows"]) for c in end["chunks"]] == [(0, 9, 10), (10, 19, 10), (20, 29, 10)]
    assert len((s / "manifest.jsonl").read_text().splitlines()) == 3
    assert json.loads((s / "status.json").read_text())["state"] == "stopped"
    rc, out = _inspect(s, capsys)
    assert rc == 0 and "stopped cleanly" in out and "0 missing chunks" in out


def test_a_deleted_chunk_is_missing_not_a_sequence_gap(tmp_path, capsys):
    s = _session(tmp_path / "s")
    (s / "chunks" / "000001.npz").unlink()
    rc, out = _inspect(s, capsys)
    assert rc == 1 and "000001.npz: missing (frames 10..19)" in out and "1 missing chunks" in out


def test_the_last_chunk_deleted_is_missing_too(tmp_path, capsys):
    s = _session(tmp_path / "s")
    (s / "chunks" / "000002.npz").unlink()
    rc, out = _inspect(s, capsys)
    assert rc == 1 and "000002.npz: missing" in out


def test_a_chunk_whose_bytes_changed_is_damaged(tmp_path, capsys):
    s = _session(tmp_path / "s")
    other = _session(tmp_path / "o")  # a valid chunk, but not the one recorded
    (s / "chunks" / "000001.npz").write_bytes((other / "chunks" / "000000.npz").read_bytes())
    rc, out = _inspect(s, capsys)
    assert rc == 1 and "000001.npz: damaged (SHA-256" in out


def _replace_chunk(s, arrays):
    """Swap in a chunk and its manifest line (as a buggy or hostile writer would): only the
    consistency checks can catch it."""
    import hashlib
    import io

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (s / "chunks" / "000001.npz").write_bytes(buf.getvalue())
    end = json.loads((s / "end.json").read_text())
    end["chunks"][1]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    (s / "end.json").write_text(json.dumps(end))


def test_a_chunk_with_another_neuron_count_is_reported_not_a_traceback(tmp_path, capsys):
    s = _session(tmp_path / "s")
    with np.load(s / "chunks" / "000001.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["activity"] = np.zeros((10, 5), np.float32)
    _replace_chunk(s, arrays)
    rc, out = _inspect(s, capsys)
    assert rc == 1 and "000001.npz: inconsistent: 'activity' rows are [5]" in out
    assert summarize(read_session(s))["frames"] == 20  # the other chunks, aligned


def test_a_chunk_missing_keys_does_not_misalign_the_arrays(tmp_path, capsys):
    s = _session(tmp_path / "s")
    with np.load(s / "chunks" / "000001.npz") as z:
        arrays = {k: z[k] for k in z.files if k != "decoded"}
    _replace_chunk(s, arrays)
    rc, out = _inspect(s, capsys)
    a = read_session(s)["arrays"]
    assert rc == 1 and "keys differ" in out
    assert {len(v) for v in a.values()} == {20}


def test_tmp_leftovers_and_an_error_end_are_reported(tmp_path, capsys):
    s = _session(tmp_path / "s", error="RuntimeError: boom")
    (s / "chunks" / "000003.npz.tmp").write_bytes(b"half")
    rc, out = _inspect(s, capsys)
    assert rc == 1 and "ended by an error" in out and "000003.npz.tmp" in out and "boom" in out


def test_full_disk_stops_recording_counts_the_loss_and_marks_the_session(tmp_path, capsys, monkeypatch):
    real = record._atomic_write
    calls = {"n": 0}

    def full_after_one_chunk(path, write):
        if path.suffix == ".npz":
            calls["n"] += 1
            if calls["n"] >= 2:
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(record, "_atomic_write", full_after_one_chunk)
    rec = Recorder(tmp_path / "s", 2, (2, 2), chunk_s=1.0, fps=10)
    for k in range(50):  # the live loop goes on: add() never raises and never blocks
        rec.add(k, k / 10, np.zeros(2, np.float32), None, (-1, -1), (-1, -1), 0.0)
    rec.close({"frames": 50})
    assert rec.written == 10 and rec.lost == 40 and rec.failed and calls["n"] == 2  # no retry once failed
    status = json.loads((tmp_path / "s" / "status.json").read_text())
    assert status["state"] == "damaged" and "No space" in status["reason"]
    rc, out = _inspect(tmp_path / "s", capsys)
    assert rc == 1 and "recording failed" in out and "40 records could not be written" in out


def test_end_json_lost_on_a_full_disk_is_still_reported(tmp_path, capsys, monkeypatch):
    real = record._atomic_write

    def no_end(path, write):
        if path.name == "end.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(record, "_atomic_write", no_end)
    _session(tmp_path / "s")
    assert not (tmp_path / "s" / "end.json").exists()
    rc, out = _inspect(tmp_path / "s", capsys)
    assert rc == 1 and "status.json: damaged" in out


@pytest.mark.parametrize("garbage", [b"\xff\xfe", b"[" * 100000, b'{"chunks": [1, "x", {"file": 3}], "ended_by": []}'])
def test_inspect_never_tracebacks_on_damaged_metadata(tmp_path, capsys, garbage):
    s = _session(tmp_path / "s")
    (s / "end.json").write_bytes(garbage)
    (s / "triggers.jsonl").write_bytes(garbage + b"\n")
    rc = main(["inspect", str(s)])
    assert rc == 1
