"""The recording's per-frame times: the sender's `t`, and `local_t` / `shown_t` on this PC's clock;
sessions recorded before those two existed still read."""

import numpy as np

from rtdecode.outputs import session_reader
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session


def test_local_and_shown_times_are_recorded_and_default_to_nan(tmp_path):
    rec = Recorder(tmp_path / "s", 3, (4, 4), fps=30.0)
    rec.add(1, 100.0, np.zeros(3, np.float32), None, (0, 5), (-1, -1), 0.001, local_t=100.2, shown_t=100.15)
    rec.add(2, 100.033, np.zeros(3, np.float32), None, (-1, -1), (-1, -1), 0.001)
    rec.close()
    s = read_session(tmp_path / "s")
    assert not s["damaged"]
    a = s["arrays"]
    np.testing.assert_array_equal(a["t"], [100.0, 100.033])
    assert a["local_t"][0] == 100.2 and a["shown_t"][0] == 100.15
    assert np.isnan(a["local_t"][1]) and np.isnan(a["shown_t"][1])


def test_a_chunk_from_before_local_times_is_consistent_and_half_of_them_is_not():
    rows = 2
    arrays = {"number": np.arange(rows), "t": np.zeros(rows), "activity": np.zeros((rows, 3), np.float32),
              "decoded": np.zeros((rows, 4, 4), np.float32), "shown": np.zeros((rows, 2), np.int64),
              "target": np.zeros((rows, 2), np.int64), "latency_s": np.zeros(rows),
              "stimulus": np.zeros((rows, 4, 4), np.uint8)}
    assert session_reader.chunk_problem(arrays.keys(), arrays, 3, [4, 4]) is None
    arrays["local_t"] = np.zeros(rows)
    assert "missing ['shown_t']" in session_reader.chunk_problem(arrays.keys(), arrays, 3, [4, 4])
    arrays["shown_t"] = np.zeros((rows, 2))
    assert "'shown_t' rows" in session_reader.chunk_problem(arrays.keys(), arrays, 3, [4, 4])
