"""The recorder never stops for good on a transient OS error (no free descriptor: EMFILE, e.g. a
connection flood on a published port): the chunk is retried while the queue behind it has room,
given up (counted, the session marked damaged) only when it is full, and the next chunks are
written as usual. Other errors (disk full, folder gone) still stop the recording."""

import errno
import json
import threading
import time

import numpy as np

from rtdecode.outputs import record
from rtdecode.outputs.record import Recorder


def _add(rec, k):
    rec.add(k, k / 10, np.full(2, k, np.float32), np.zeros((2, 2), np.float32), (-1, -1), (-1, -1), 0.0)


def _failing(monkeypatch, fail: threading.Event, err=errno.EMFILE):
    real = record._atomic_write

    def flaky(path, write):
        if fail.is_set() and path.suffix == ".npz":
            raise OSError(err, "Too many open files" if err == errno.EMFILE else "No space left", str(path))
        return real(path, write)

    monkeypatch.setattr(record, "_atomic_write", flaky)
    monkeypatch.setattr(record, "RETRY_S", (0.001, 0.01))


def test_emfile_for_a_while_loses_nothing(tmp_path, monkeypatch):
    fail = threading.Event()
    fail.set()
    _failing(monkeypatch, fail)
    rec = Recorder(tmp_path / "s", 2, (2, 2), chunk_s=1.0, fps=10, max_backlog=30)
    for k in range(30):
        _add(rec, k)
    deadline = time.monotonic() + 30
    while rec.transient_errors < 3 and time.monotonic() < deadline:  # the writer has met the error
        time.sleep(0.01)
    fail.clear()  # the descriptors come back
    for k in range(30, 50):
        _add(rec, k)
    rec.close({"frames": 50})
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    assert end["lost_records"] == 0 and end["written"] == 50 and not end["damaged"]
    assert end["transient_errors"] > 0 and end["chunks_given_up"] == 0
    assert json.loads((tmp_path / "s" / "status.json").read_text())["state"] == "stopped"


def test_emfile_past_the_queue_gives_up_one_chunk_at_a_time_and_recording_goes_on(tmp_path, monkeypatch):
    fail = threading.Event()
    fail.set()
    _failing(monkeypatch, fail)
    rec = Recorder(tmp_path / "s", 2, (2, 2), chunk_s=1.0, fps=10, max_backlog=2)
    for k in range(60):  # 6 chunks against a queue of 2: the oldest are given up, the live loop is not stalled for good
        _add(rec, k)
    fail.clear()
    for k in range(60, 80):
        _add(rec, k)
    rec.close({"frames": 80})
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    assert end["chunks_given_up"] > 0
    assert end["written"] + end["lost_records"] == 80
    assert end["chunks"][-1]["last"] == 79  # recording went on after the errors
    assert "Too many open files" in end["damaged"]
    assert json.loads((tmp_path / "s" / "status.json").read_text())["state"] == "damaged"


def test_a_full_disk_still_stops_the_recording(tmp_path, monkeypatch):
    fail = threading.Event()
    fail.set()
    _failing(monkeypatch, fail, errno.ENOSPC)
    rec = Recorder(tmp_path / "s", 2, (2, 2), chunk_s=1.0, fps=10)
    for k in range(20):
        _add(rec, k)
    deadline = time.monotonic() + 30
    while rec.failed is None and time.monotonic() < deadline:
        time.sleep(0.01)
    fail.clear()
    for k in range(20, 40):
        _add(rec, k)
    rec.close({"frames": 40})
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    assert end["written"] == 0 and end["lost_records"] == 40 and "No space left" in end["damaged"]
