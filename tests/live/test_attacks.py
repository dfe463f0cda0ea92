"""Each attack of issue 12 against a live session on loopback sockets: the session survives, counts
the message under a fixed reason, and goes on; only the acquisition source ends it, validly."""

import json
import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode import decode
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import random_decoder
from rtdecode.extract.ring import ActivityRing
from rtdecode.live.session import LiveSession
from rtdecode.live.stimulus_log import StimulusLog
from rtdecode.outputs.publish import Publisher
from rtdecode.sources import wire
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.rejects import REASONS
from rtdecode.stage import Chain

N, BINS = 16, 3


@pytest.fixture
def chain(tmp_path):
    dec = random_decoder(N, BINS, (6, 8), rank=4, seed=0)
    card = model_dir.new_card("ridge", N, 0, BINS, (6, 8), 30.0)
    model_dir.save(tmp_path / "m", card, dec.arrays())
    card, dec = decode.load(tmp_path / "m")
    return Chain([ActivityRing(N, BINS), decode.DecodeStage(card, dec)])


def _pub(ctx):
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.LINGER, 1000)
    s.bind("tcp://127.0.0.1:*")
    return s, s.getsockopt_string(zmq.LAST_ENDPOINT)


def _frame(seq, k, **over):
    fields = dict(frameNumberAcq=k + 1, channel=0, plane=0)  # ScanImage counts from 1
    fields.update(over)
    return wire.encode("frame", seq, time.time(), np.full(N, k % 7, np.float32), **fields)


def _header(topic, header, payload=b""):
    return [topic, json.dumps(header).encode(), payload]


def _run(chain, attacks, n_frames=20, stim_attacks=(), end_from_stim=False, seconds=20, ingest_kw=None,
         wait_resubscribe=False):
    """A session fed by a source (frames, with `attacks` sent after frame 5) and a stimulus
    publisher (`stim_attacks`); returns (result, ingest, stats)."""
    ctx = zmq.Context.instance()
    src, ep = _pub(ctx)
    src.setsockopt(zmq.XPUB_VERBOSE, 1)  # every (re)subscription shows
    stim, ep_stim = _pub(ctx)
    ingest = Ingest([ep, ep_stim], **(ingest_kw or {}))
    out = Publisher()
    session = LiveSession(ingest, chain, out, lag_min=0, max_age_s=None)

    def send():
        assert src.poll(5000) and stim.poll(5000)  # both subscriptions arrived
        for sock in (src, stim):
            while sock.poll(200):  # the subscription messages (frame, stim, stats)
                sock.recv()
        seq, sseq = wire.Sequencer(), wire.Sequencer()
        for k in range(n_frames):
            stim.send_multipart(wire.encode("stim", sseq(), time.time(), None, frame=k, trial=0))
            src.send_multipart(_frame(seq(), k))
            if k == 5:
                for a in attacks:
                    src.send_multipart(a)
                for a in stim_attacks:
                    stim.send_multipart(a)
                if end_from_stim:
                    stim.send_multipart(wire.encode("stats", sseq(), time.time(), None, end=True, frames=10**12))
                if wait_resubscribe:  # the subscriber was disconnected: wait until it subscribes again
                    while src.poll(5000) and src.recv() != b"\x01frame":
                        pass
                time.sleep(0.05)
            time.sleep(0.002)
        src.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True, frames=n_frames))

    th = threading.Thread(target=send, daemon=True)
    th.start()
    try:
        res = session.run(seconds=seconds)
        stats = session.stats()
    finally:
        th.join(timeout=10)
        ingest.close()
        out.close()
        src.close()
        stim.close()
    return res, ingest, stats


RTFRAME_ATTACKS = {
    "65 dimensions": _header(b"frame", {"v": 1, "seq": 99, "t": 1.0, "dtype": "|u1", "shape": [1] * 65,
                                        "frameNumberAcq": 1, "channel": 0, "plane": 0}, b"\0"),
    "2**70 dimension": _header(b"frame", {"v": 1, "seq": 99, "t": 1.0, "dtype": "|u1", "shape": [0, 2**70],
                                          "frameNumberAcq": 1, "channel": 0, "plane": 0}),
    "100,000 nested [": [b"frame", b"[" * 100000 + b"]" * 100000, b""],
    "frameNumberAcq abc": wire.encode("frame", 6, time.time(), np.zeros(N, np.float32), frameNumberAcq="abc",
                                      channel=0, plane=0),
    "NaN t": [b"frame", b'{"v":1,"seq":6,"t":NaN,"dtype":"<f4","shape":[16],"frameNumberAcq":6,"channel":0,"plane":0}',
              np.zeros(N, np.float32).tobytes()],
    "end not a bool": wire.encode("stats", 6, time.time(), None, end="yes"),
}


@pytest.mark.parametrize("name", list(RTFRAME_ATTACKS))
def test_one_hostile_rtframe_message_does_not_end_the_session(chain, name):
    res, ingest, stats = _run(chain, [RTFRAME_ATTACKS[name]])
    assert res.ended and res.stopped_by == "source" and res.frames == 20 and res.errors == 0
    assert ingest.n_rejected == 1 and set(ingest.rejected) <= set(REASONS)
    assert res.lost_frames == 0 and ingest.dropped == 0


def test_stim_with_a_text_trial_is_rejected_and_the_session_goes_on(chain):
    bad = _header(b"stim", {"v": 1, "seq": 6, "t": 1.0, "dtype": "|u1", "shape": [0], "frame": 1, "trial": "abc"})
    res, ingest, _ = _run(chain, [], stim_attacks=[bad])
    assert res.ended and res.frames == 20 and ingest.rejected["field"] == 1


def test_only_the_source_can_end_the_session(chain):
    """`stats {end: true, frames: 1e12}` from the stimulus publisher neither ends the session nor
    inflates lost_frames; a frame from it is refused too."""
    res, ingest, stats = _run(chain, [], stim_attacks=[_frame(50, 3)], end_from_stim=True)
    assert res.ended and res.stopped_by == "source" and res.frames == 20
    assert res.lost_frames == 0 and ingest.rejected["source"] == 2
    assert stats["lost_frames"] == 0


def test_absurd_counters_are_restarts_not_losses(chain):
    """seq = 2**52 and frameNumberAcq = 2**50 do not set dropped / lost_frames to absurd values. The
    stream goes on from where it was after the message, so the jump is taken back: a stray message
    (as from a second publisher on the address, rtdecode.sources.wire.GapCounter), not two restarts."""
    attacks = [wire.encode("frame", 2**52, time.time(), np.zeros(N, np.float32), frameNumberAcq=2**50,
                           channel=0, plane=0)]
    res, ingest, stats = _run(chain, attacks)
    assert res.ended and res.frames == 21
    assert ingest.dropped < 10 and res.lost_frames < 10
    assert res.source_restarts == 0 and ingest.restarts == 0
    assert stats["other_publisher_frames"] == 1


def test_distinct_garbage_grows_nothing(chain):
    """2,000 messages with distinct bad versions: counted under one reason, the stats stay small."""
    attacks = [_header(b"frame", {"v": f"v{i}", "seq": 0, "t": 0}) for i in range(2000)]
    res, ingest, stats = _run(chain, attacks)
    assert res.ended and res.frames == 20
    assert set(ingest.rejected) == {"version"} and ingest.rejected["version"] > 0  # (a small HWM may drop some)
    assert len(json.dumps(stats)) < 8000


def test_a_message_over_the_size_limit_is_refused_before_it_is_held(chain):
    big = wire.encode("frame", 6, time.time(), np.zeros(2 * 2**20, np.uint8), frameNumberAcq=6, channel=0, plane=0)
    res, ingest, _ = _run(chain, [big], ingest_kw={"max_msg_bytes": 2**20}, wait_resubscribe=True)
    # ZeroMQ (MAXMSGSIZE) disconnects the peer before holding the message; the subscriber
    # reconnects, the session goes on and ends by the source's end message
    assert res.stopped_by == "source" and res.frames == 20 and ingest.n_rejected == 0 and ingest.redials == 1


def test_a_failing_receive_is_counted_and_the_session_goes_on(chain):
    class Flaky:
        def __init__(self):
            self.calls = 0

        def receive(self, timeout_ms=100):
            self.calls += 1
            if self.calls == 3:
                raise RuntimeError("a source bug")
            if self.calls == 10:
                return wire.Message("stats", {"v": 1, "seq": 0, "t": 0.0, "end": True})
            if self.calls == 5:  # a stim message whose fields a broken adapter did not check
                return wire.Message("stim", {"v": 1, "seq": 0, "t": 0.0, "trial": None, "frame": None}, None)
            return None

        def counts(self):
            return {}

    out = Publisher()
    session = LiveSession(Flaky(), chain, out, lag_min=0)
    res = session.run(seconds=10)
    out.close()
    assert res.ended and res.message_errors == 1 and dict(session.rejects.counts) == {"internal": 1, "field": 1}


def test_stimulus_log_is_bounded_in_bytes():
    log = StimulusLog(keep=1000, max_image_bytes=10_000)
    for k in range(100):
        log.add(float(k), 0, k, np.zeros((30, 30), np.uint8))  # 900 bytes each
    assert log.image_bytes <= 10_000 and len(log.images) == 11 and log.images_dropped == 89
    assert (0, 99) in log.images and log.at(50.0) == (0, 50)


def test_latest_hands_out_the_newest_frame_and_counts_the_skipped():
    ctx = zmq.Context.instance()
    src, ep = _pub(ctx)
    ingest = Ingest([ep], freshness="latest")
    try:
        assert src.poll(5000)
        src.recv()
        time.sleep(0.05)
        seq = wire.Sequencer()
        for k in range(10):
            src.send_multipart(wire.encode("stim", seq(), time.time(), None, frame=k, trial=0))
            src.send_multipart(_frame(seq(), k))
        time.sleep(0.3)
        got = []
        while (m := ingest.receive(200)) is not None:
            got.append(m)
        frames = [m for m in got if m.topic == "frame"]
        assert [m.header["frameNumberAcq"] for m in frames][-1] == 10
        assert len([m for m in got if m.topic == "stim"]) == 10  # every stimulus message is kept
        assert ingest.skipped == 10 - len(frames) > 0 and sum(m.skipped for m in frames) == ingest.skipped
        assert all(m.acquired <= m.received for m in frames)
    finally:
        ingest.close()
        src.close()


def test_the_stats_message_stays_bounded_whatever_the_counts(chain):
    """An adapter whose counts grew with sender-chosen names cannot make the stats message huge."""

    class Noisy:
        def receive(self, timeout_ms=100):
            return wire.Message("stats", {"v": 1, "seq": 0, "t": 0.0, "end": True})

        def counts(self):
            return {"rejected": 1, "unknown_units": {f"unit {i}" * 5: i for i in range(20000)}}

    ctx = zmq.Context.instance()
    out = Publisher()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"stats")
    sub.connect(out.endpoint)
    time.sleep(0.2)
    try:
        LiveSession(Noisy(), chain, out, lag_min=0).publish_stats()
        assert sub.poll(5000)
        msg = sub.recv_multipart()
    finally:
        sub.close()
        out.close()
    header = json.loads(msg[1])
    assert len(msg[1]) < 40_000 and header["truncated"] and "unknown_units" not in header
    assert "acquired_to_published_ms" in header and header["rejected"] == 1
