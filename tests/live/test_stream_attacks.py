"""Issue 27, the not-yet-tried list (rtframe side), on loopback sockets, against a live session with
a trigger rule that fires on every decoded frame (the helpers of test_time_attacks):

- seq wraparound: a sender's counter wrapping (a 32-bit counter back to 0; the wire's largest
  counter, 2**53, then 0): followed, one restart each, no message counted as dropped;
- two publishers on the source's address (a forwarder, or a second rig left running), with
  duplicate or distant counters: the first is followed, the other's messages are rejected (reason
  'source', counted) and neither counts bogus drops or silences the triggers;
- frame numbers going backwards (ScanImage restarted its acquisition): counted as restarts, every
  frame recorded, and `inspect` and `export` (the dataset `fit` reads) take the session;
- the session folder deleted mid-session: decoding and triggers go on, the records lost are counted,
  and the run ends with an error saying so instead of a clean stop.
"""

import json
import shutil
import time

import numpy as np
import zmq
from tests.live.test_time_attacks import MAX_AGE_S, MARGIN_S, N, Sender, _ages, _run, _session

from rtdecode.cli import main
from rtdecode.outputs.session_reader import read_session
from rtdecode.sources import wire


class Wrapping(Sender):
    """A Sender whose next frames carry chosen seq / frameNumberAcq values."""

    def frame_with(self, seq, number, t=None):
        now = time.time()
        self.src.send_multipart(wire.encode("frame", seq, now if t is None else t, np.full(self.n, 1.0, np.float32),
                                            frameNumberAcq=number, channel=0, plane=0))
        self.sent.append(now)
        self.k += 1

    def paced(self, seconds, items, rate=30.0):
        """Send `items` (seq, number) at `rate`, stim messages at 30 Hz alongside; returns (t0, t1)."""
        t0 = time.time()
        for i, (seq, number) in enumerate(items):
            while time.time() < t0 + i / rate:
                if time.time() >= self.stim_next:
                    self.stim.send_multipart(wire.encode("stim", self.sseq, time.time(), None, trial=0, frame=self.sseq))
                    self.sseq += 1
                    self.stim_next = time.time() + 1 / 30
                time.sleep(0.0005)
            self.frame_with(seq, number)
        return t0, time.time()


def _fired_by_number(sink):
    return [e["frameNumberAcq"] for _, e in sink.events]


def _close(engine, ingest, out, sender):
    engine.close()
    ingest.close()
    ingest.ctx.term()
    out.close()
    sender.close()


def test_seq_wraparound_is_followed_without_bogus_drops(tmp_path):
    ctx = zmq.Context.instance()
    sender = Wrapping(ctx)
    session, ingest, engine, sink, _, out = _session(tmp_path, sender)
    phases = {}

    def script():
        sender.wait()
        items = [(2**32 - 30 + i, i + 1) for i in range(30)]  # a 32-bit counter ...
        items += [(i, 31 + i) for i in range(30)]  # ... wraps to 0
        items += [(wire.MAX_COUNTER - 29 + i, 61 + i) for i in range(30)]  # up to the wire's largest counter
        items += [(i, 91 + i) for i in range(30)]  # ... and back to 0
        phases["all"] = sender.paced(4.0, items)
        sender.src.send_multipart(wire.encode("stats", 30, time.time(), None, end=True, frames=120))

    try:
        res = _run(session, script)
        stats = session.stats()
    finally:
        _close(engine, ingest, out, sender)
    assert res.ended and res.frames == 120
    assert stats["dropped"] == 0 and stats["rejected"] == 0 and stats["lost_frames"] == 0
    assert stats["restarts"] == 3  # 32-bit wrap, 2**53 -> 0, and the first jump to 2**53 - 29
    fired = _fired_by_number(sink)
    assert fired and max(fired) >= 110  # triggers fire after the wraps
    assert [a for _, a in _ages_by_number(sink, sender) if a > MAX_AGE_S + MARGIN_S] == []


def _ages_by_number(sink, sender):
    # frameNumberAcq k was the k-th frame sent here
    return [(t, t - sender.sent[e["frameNumberAcq"]]) for t, e in sink.events]


def _two_publishers(tmp_path, b_seq0, b_number0):
    """Publisher A (seq from 0, frames from 1) and B (seq from b_seq0, frames from b_number0) on the
    same address, interleaved, 150 frames each at 30 Hz each."""
    ctx = zmq.Context.instance()
    sender = Wrapping(ctx)
    session, ingest, engine, sink, rec, out = _session(tmp_path, sender, record=True)
    n = 150

    def script():
        sender.wait()
        items = []
        for i in range(n):
            items += [(i, i + 1), (b_seq0 + i, b_number0 + i)]
        sender.paced(5.0, items, rate=60.0)
        sender.src.send_multipart(wire.encode("stats", n, time.time(), None, end=True, frames=n))

    try:
        res = _run(session, script)
        stats = session.stats()
        rec.close(stats)
    finally:
        _close(engine, ingest, out, sender)
    return res, stats, sink, sender, n


def _check_two_publishers(res, stats, sink, n, tmp_path):
    assert res.ended
    # A's frames are all processed and recorded, in order; B's are rejected and counted
    assert stats["rejected_by_reason"].get("source", 0) >= n - 2
    assert res.frames <= n + 2
    assert stats["dropped"] < 5 and stats["lost_frames"] < 5 and stats["source_restarts"] <= 2
    fired = _fired_by_number(sink)
    assert len([k for k in fired if k > n // 2]) > n // 4  # triggers keep firing on A's frames
    # every frame of A on disk, in order; of B at most the first (it could not be told from a restart yet)
    number = read_session(tmp_path / "s")["arrays"]["number"]
    a_frames = number[number <= n]
    assert list(np.unique(a_frames)) == list(range(1, n + 1)) and np.all(np.diff(a_frames) >= 0)
    assert len(number) <= n + 1
    assert stats["other_publisher_frames"] + stats["repeated_frames"] <= 1


def test_two_publishers_with_duplicate_seq_on_one_address(tmp_path):
    res, stats, sink, sender, n = _two_publishers(tmp_path, 0, 1)
    _check_two_publishers(res, stats, sink, n, tmp_path)


def test_two_publishers_with_distant_counters_on_one_address(tmp_path):
    res, stats, sink, sender, n = _two_publishers(tmp_path, 5000, 9000)
    _check_two_publishers(res, stats, sink, n, tmp_path)


class WithImages(Wrapping):
    """Stim messages carry a 4x4 image (the recorder's frame shape), so that the session can be
    exported as a fit dataset."""

    def paced(self, seconds, items, rate=30.0):
        t0 = time.time()
        for i, (seq, number) in enumerate(items):
            while time.time() < t0 + i / rate:
                time.sleep(0.0005)
            now = time.time()
            self.stim.send_multipart(wire.encode("stim", self.sseq, now, np.full((4, 4), i % 256, np.uint8),
                                                 trial=i // 90, frame=i % 90))
            self.sseq += 1
            self.frame_with(seq, number)
        return t0, time.time()


def test_frame_numbers_going_backwards_are_restarts_and_inspect_and_fit_take_the_session(tmp_path):
    ctx = zmq.Context.instance()
    sender = WithImages(ctx)
    session, ingest, engine, sink, rec, out = _session(tmp_path, sender, record=True)
    numbers = list(range(1, 61)) + list(range(1, 61)) + list(range(40, 100))  # two acquisitions restarted

    def script():
        sender.wait()
        sender.paced(6.0, [(i, k) for i, k in enumerate(numbers)])
        sender.src.send_multipart(wire.encode("stats", len(numbers), time.time(), None, end=True))

    try:
        res = _run(session, script)
        stats = session.stats()
        rec.close(stats)
    finally:
        _close(engine, ingest, out, sender)
    assert res.ended and res.frames == len(numbers)
    assert stats["source_restarts"] == 2 and stats["lost_frames"] == 0 and stats["dropped"] == 0
    s = read_session(tmp_path / "s")
    assert not s["damaged"] and list(s["arrays"]["number"]) == numbers  # every frame, in arrival order
    assert main(["inspect", str(tmp_path / "s")]) == 0
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.session_export import export_sensorium

    root = export_sensorium(tmp_path / "s", tmp_path / "dataset")
    labelled = int((s["arrays"]["shown"][:, 0] >= 0).sum())
    ds = Dataset(root)
    assert labelled > len(numbers) // 2
    assert sum(ds.load(t).responses.shape[1] for t in ds.trials("train")) == labelled
    assert main(["fit", str(tmp_path / "s"), "--out", str(tmp_path / "model"), "--method", "ridge",
                 "--window", "1"]) == 0


def test_the_session_folder_deleted_mid_session_loses_only_what_was_on_disk_and_says_so(tmp_path, capsys):
    ctx = zmq.Context.instance()
    sender = Wrapping(ctx)
    session, ingest, engine, sink, rec, out = _session(tmp_path, sender, record=True)
    folder = tmp_path / "s"
    phases = {}

    def script():
        sender.wait()
        phases["before"] = sender.paced(2.5, [(i, i + 1) for i in range(75)])
        shutil.rmtree(folder)
        phases["after"] = sender.paced(3.0, [(75 + i, 76 + i) for i in range(90)])
        sender.src.send_multipart(wire.encode("stats", 165, time.time(), None, end=True, frames=165))

    try:
        res = _run(session, script)
        stats = session.stats()
        rec.close(stats)
    finally:
        _close(engine, ingest, out, sender)
    assert res.ended and res.frames == 165
    fired = _fired_by_number(sink)
    assert max(fired) > 150  # decoding and triggers went on
    end = json.loads((folder / "end.json").read_text())
    assert end["folder_deleted"] == 1 and "deleted" in end["damaged"]
    # every record is on disk or counted lost; the frames after the deletion are on disk
    s = read_session(folder)
    kept = s["arrays"]["number"]
    assert len(kept) + end["lost_records"] == 165 and end["written"] == len(kept)
    assert set(range(90, 166)) <= set(kept.tolist())
    assert end["lost_triggers"] > 0  # the lines written before it went with the folder: counted, not written into the void
    assert main(["inspect", str(folder)]) == 1
    text = capsys.readouterr().out
    assert "missing" in text and "deleted" in text
