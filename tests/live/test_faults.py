"""Faults in a live session: a source that vanishes and returns, a stage that raises, a record path
that cannot be written, a full disk mid-session, a viewer that goes away."""

import errno
import json
import queue
import socket
import threading
import time

import pytest
import zmq

from rtdecode.outputs import record
from rtdecode.sources import wire
from rtdecode.bench.e2e import build_live
from rtdecode.errors import RecordError
from rtdecode.sources.ingest import Ingest
from rtdecode.live.session import LiveSession
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.rig.sender import SenderConfig, run_sender
from rtdecode.stage import Chain, Stage
from rtdecode.outputs.triggers import CallableRule, TriggerEngine
from rtdecode.outputs.triggers.sinks import ZmqSink

N, SHAPE, BINS, SEED = 40, (128, 128), 4, 3


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    return build_live(tmp_path_factory.mktemp("live"), N, SHAPE, SEED, bins=BINS)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sender(frames, endpoint="tcp://127.0.0.1:*", speed=0.0, send_end=True, wait_s=60.0):
    """The virtual rig's sender on a thread; returns (thread, bound endpoint)."""
    ready = queue.Queue()
    cfg = SenderConfig(n_neurons=N, seed=SEED, n_train=1, n_oracle=1, speed=speed, frame_shape=SHAPE,
                       max_frames=frames, prerender=min(frames, 30), endpoint=endpoint, wait_subscriber_s=wait_s,
                       send_end=send_end)
    th = threading.Thread(target=run_sender, args=(cfg, ready), daemon=True)
    th.start()
    return th, ready.get(timeout=60)


def test_source_vanishes_and_returns_on_the_same_port(live, caplog):
    chain, _ = live
    chain.reset()
    ep = f"tcp://127.0.0.1:{_free_port()}"
    first, _ = _sender(30, ep, speed=4.0, send_end=False)  # goes away without saying so
    ingest = Ingest([ep])
    pub = Publisher()
    session = LiveSession(ingest, chain, pub, lag_min=0, silence_s=0.5)

    def restart():
        first.join(timeout=30)
        time.sleep(1.2)  # the source is gone for a while, then a new one binds the same port
        second, _ = _sender(30, ep, speed=4.0)
        second.join(timeout=30)

    th = threading.Thread(target=restart, daemon=True)
    th.start()
    res = session.run(seconds=60, idle_timeout_s=20)
    th.join(timeout=30)
    ingest.close()
    pub.close()
    assert res.ended and res.errors == 0
    assert res.frames + res.lost_frames == 60 and res.frames > 0
    assert res.source_restarts == 1 and ingest.restarts == 1
    assert res.silences == 1 and res.longest_silence_s > 0.5
    assert "no frame from the source" in caplog.text and "source restarted" in caplog.text
    stats = session.stats()
    assert stats["source_restarts"] == 1 and stats["silences"] == 1


class Exploding(Stage):
    """Wraps a stage; raises on every call from the `after`-th on."""

    def __init__(self, inner: Stage, after: int):
        self.inner, self.after, self.calls = inner, after, 0
        self.name, self.in_spec, self.out_spec = "exploding_" + inner.name, inner.in_spec, inner.out_spec

    def process(self, inp, out):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("decoder blew up")
        self.inner.process(inp, out)


def test_a_stage_that_raises_disables_triggers_and_stops_after_max_errors(live, caplog):
    chain, _ = live
    chain.reset()
    bad = Chain(chain.stages[:-1] + [Exploding(chain.stages[-1], after=10)])
    th, ep = _sender(60, speed=4.0)
    ingest = Ingest([ep])
    pub = Publisher()
    triggers = TriggerEngine([CallableRule("every", lambda f: 1.0, refractory_s=0.0)], [ZmqSink(pub)], max_lag_s=10)
    session = LiveSession(ingest, bad, pub, lag_min=0, triggers=triggers, max_errors=5)
    res = session.run(seconds=60)
    th.join(timeout=30)
    triggers.close()
    ingest.close()
    pub.close()
    assert res.errors == 5 and res.frames == 10 and not res.ended  # stopped itself, before the source ended
    assert not triggers.enabled and triggers.disabled_reason == "a stage raised an error"
    assert triggers.fired == 10 - (BINS - 1)  # fired until the first error, never after
    assert "5 errors in a row: stopping the session" in caplog.text
    assert "triggers disabled: a stage raised an error" in caplog.text
    assert session.stats()["triggers"]["disabled_reason"] == "a stage raised an error"


def test_unwritable_record_path_fails_before_the_first_frame(tmp_path):
    (tmp_path / "file").write_text("")
    for bad in (tmp_path / "file" / "session", "/proc/rtdecode-no-such-dir/session"):
        with pytest.raises(RecordError, match="cannot create the session folder"):
            Recorder(bad, N, (36, 64))


def test_disk_full_mid_session_is_counted_and_the_session_goes_on(live, tmp_path, monkeypatch):
    chain, card = live
    chain.reset()
    real = record._atomic_write
    failed = []

    def flaky(path, write):  # chunks 1 and 2 would hit a full disk; the first failure stops recording
        if path.parent.name == "chunks" and path.name in ("000001.npz", "000002.npz"):
            failed.append(path.name)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real(path, write)

    monkeypatch.setattr(record, "_atomic_write", flaky)
    frames = 150
    th, ep = _sender(frames, speed=4.0)
    ingest = Ingest([ep])
    pub = Publisher()
    rec = Recorder(tmp_path / "s", N, card.frame_shape)
    session = LiveSession(ingest, chain, pub, lag_min=0, recorder=rec)
    res = session.run(seconds=60)
    th.join(timeout=30)
    stats = session.stats()
    rec.close(stats)
    ingest.close()
    pub.close()
    assert res.ended and res.errors == 0 and res.frames + res.lost_frames == frames
    assert failed == ["000001.npz"]  # recording stopped there: no retry onto a full disk
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    assert end["write_errors"] == 1 and end["record_errors"] == 1 and "No space" in end["damaged"]
    assert end["lost_records"] > 0 and end["lost_records"] == end["records"] - end["written"]
    assert end["records"] == res.frames and end["records_lost"] == end["lost_records"]
    s = read_session(tmp_path / "s")
    summary = summarize(s)
    assert summary["frames"] == end["written"]  # what is on disk is what the count says
    assert not summary["ok"] and any("recording failed" in d for d in summary["damaged"])


def test_a_viewer_that_disconnects_does_not_stop_publishing(live):
    chain, _ = live
    chain.reset()
    frames = 90
    th, ep = _sender(frames, speed=2.0)
    ingest = Ingest([ep])
    pub = Publisher()
    session = LiveSession(ingest, chain, pub, lag_min=0)
    got = {"first": 0, "second": 0}

    def viewers():
        ctx = zmq.Context.instance()
        for name in ("first", "second"):
            sock = ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.SUBSCRIBE, b"decoded")
            sock.connect(pub.endpoint)
            while got[name] < 10 and sock.poll(5000):
                assert wire.decode(sock.recv_multipart()).topic == "decoded"
                got[name] += 1
            sock.close(linger=0)  # the viewer goes away mid-stream

    v = threading.Thread(target=viewers, daemon=True)
    v.start()
    res = session.run(seconds=60)
    th.join(timeout=30)
    v.join(timeout=10)
    ingest.close()
    pub.close()
    assert got == {"first": 10, "second": 10}
    assert res.ended and res.errors == 0
    assert res.published == res.frames - (BINS - 1) and res.frames + res.lost_frames == frames
