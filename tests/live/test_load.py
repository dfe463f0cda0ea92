"""Playback faster than real time: every queue stays bounded and the counters say what was dropped."""

import queue
import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.sources import wire
from rtdecode.bench.e2e import build_live
from rtdecode.sources.ingest import Ingest
from rtdecode.live.session import LiveSession
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.rig.sender import SenderConfig, run_sender
from rtdecode.stage import Chain, Spec, Stage
from rtdecode.outputs.triggers import CallableRule, TriggerEngine
from rtdecode.outputs.triggers.sinks import ZmqSink

N, SHAPE, BINS, SEED = 200, (256, 256), 4, 2


def _stats_listener(endpoint):
    """A SUB on `stats` in a thread; returns (thread, list of stats headers)."""
    got, ready = [], threading.Event()

    def listen():
        sock = zmq.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.SUBSCRIBE, b"stats")
        sock.connect(endpoint)
        ready.set()
        while sock.poll(3000):
            got.append(wire.decode(sock.recv_multipart()).header)
        sock.close()

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    ready.wait(5)
    time.sleep(0.2)
    return th, got


def test_4x_playback_counts_every_frame_and_recording_keeps_up(tmp_path):
    chain, card = build_live(tmp_path / "m", N, SHAPE, SEED, bins=BINS)
    frames = 240  # 2 s of sending at 4x
    ready = queue.Queue()
    cfg = SenderConfig(n_neurons=N, seed=SEED, n_train=1, n_oracle=1, speed=4.0, frame_shape=SHAPE,
                       max_frames=frames, prerender=120, wait_subscriber_s=60)
    sender = threading.Thread(target=run_sender, args=(cfg, ready), daemon=True)
    sender.start()
    endpoint = ready.get(timeout=60)
    pub = Publisher()
    listener, stats_msgs = _stats_listener(pub.endpoint)
    rec = Recorder(tmp_path / "s", N, card.frame_shape)
    triggers = TriggerEngine([CallableRule("every", lambda f: 1.0, refractory_s=0.0)], [ZmqSink(pub)],
                             max_lag_s=10.0, record=rec.trigger)
    ingest = Ingest([endpoint])
    session = LiveSession(ingest, chain, pub, lag_min=0, recorder=rec, triggers=triggers, stats_every_s=0.2)
    res = session.run(seconds=60)
    sender.join(timeout=30)
    stats = session.stats()
    triggers.close()
    rec.close(stats)
    listener.join(timeout=10)
    ingest.close()
    pub.close()

    assert res.ended and res.errors == 0 and res.rejected_frames == 0
    # Exact accounting: what arrived plus what the counters call lost is what was sent.
    assert res.frames + res.lost_frames == frames
    sent_messages = 2 * frames + 1  # stim + frame per tick, then the end message
    assert sum(ingest.received.values()) + ingest.dropped == sent_messages
    assert res.published == res.frames - (BINS - 1)
    # Recording never drops: every processed frame is on disk, the backlog drained.
    assert rec.backlog == 0 and rec.errors == 0 and rec.lost == 0
    s = read_session(tmp_path / "s")
    assert summarize(s)["frames"] == res.frames and s["end"]["lost_records"] == 0
    # every decoded frame fired or (a loaded machine) had its trigger suppressed, counted and recorded as
    # such: too old ('stale'), or the ingest behind ('congested': 4x playback can fill its queue)
    assert len(s["triggers"]) == triggers.fired + sum(triggers.suppressed.values()) == res.published
    for reason in ("stale", "clock", "congested"):
        assert sum(1 for t in s["triggers"] if t.get("suppressed") == reason) == triggers.suppressed[reason], reason
    # The 1-s stats carry the queue sizes and the per-stage timings.
    last = stats_msgs[-1]
    for key in ("record_backlog", "record_backlog_max", "records_lost", "lost_frames", "dropped", "stages_ms"):
        assert key in last
    assert list(last["stages_ms"]) == chain.stage_names()
    assert last["stages_ms"]["decode"]["n"] == res.frames
    assert "pending" in last["triggers"] and "to_wire_ms" in last["triggers"]


class Throttle(Stage):
    """A pass-through stage that takes `delay_s` per frame while `slow` is set (an overloaded stage)."""

    name = "throttle"

    def __init__(self, spec: Spec, slow: threading.Event, delay_s: float):
        self.in_spec = self.out_spec = spec
        self.slow, self.delay_s = slow, delay_s

    def process(self, inp, out):
        if self.slow.is_set():
            time.sleep(self.delay_s)
        out[...] = inp


def test_overload_drops_at_ingest_only_and_counts_exactly(tmp_path):
    chain, card = build_live(tmp_path / "m", 40, (128, 128), SEED, bins=BINS)
    slow = threading.Event()
    slow.set()
    act = chain.stages[-3].out_spec  # the activity vector, just before the ring
    chain = Chain(chain.stages[:-2] + [Throttle(act, slow, 0.03)] + chain.stages[-2:])
    ctx = zmq.Context.instance()
    src = ctx.socket(zmq.PUB)
    src.setsockopt(zmq.SNDHWM, 4)
    src.bind("tcp://127.0.0.1:*")
    endpoint = src.getsockopt_string(zmq.LAST_ENDPOINT)
    from rtdecode.rig.twophoton import Microscope

    scope = Microscope(40, seed=SEED, frame_shape=(128, 128))
    imgs = scope.render_movie(scope.poisson_spikes(20, seed=1))
    frames = 200
    pub = Publisher()
    rec = Recorder(tmp_path / "s", 40, card.frame_shape)
    ingest = Ingest([endpoint], hwm=4)
    session = LiveSession(ingest, chain, pub, lag_min=0, recorder=rec)

    def send():
        time.sleep(0.3)
        seq = wire.Sequencer()
        for k in range(frames):  # 4x real time into a stage that manages ~33 frames a second
            now = time.time()
            src.send_multipart(wire.encode("stim", seq(), now, None, frame=k % 20, trial=0))
            src.send_multipart(wire.encode("frame", seq(), now, imgs[k % 20], frameNumberAcq=k + 1, channel=1, plane=1))
            time.sleep(1 / 120)
        slow.clear()  # the stage recovers; what is queued drains
        seen, quiet_since = -1, time.monotonic()
        while time.monotonic() - quiet_since < 0.5:  # until nothing more arrives
            time.sleep(0.05)
            if sum(ingest.received.values()) != seen:
                seen, quiet_since = sum(ingest.received.values()), time.monotonic()
        src.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True, frames=frames))

    th = threading.Thread(target=send, daemon=True)
    th.start()
    res = session.run(seconds=60)
    th.join(timeout=30)
    rec.close(session.stats())
    src.close()
    ingest.close()
    pub.close()
    assert res.ended and res.errors == 0
    assert res.lost_frames > 0  # the overload did drop frames, at ingest (the sender's full queue)...
    assert res.frames + res.lost_frames == frames  # ...and the counters say exactly how many
    assert sum(ingest.received.values()) + ingest.dropped == 2 * frames + 1
    # Everything that was processed was recorded: recording does not drop to keep up.
    assert rec.backlog == 0 and rec.lost == 0
    assert summarize(read_session(tmp_path / "s"))["frames"] == res.frames
    assert np.isfinite(chain.stage_latency[-3].percentile(50))


@pytest.mark.slow
def test_one_minute_soak_loses_no_record(tmp_path):
    from rtdecode.bench import soak

    d = soak.soak(minutes=1.0, json_out=tmp_path / "soak.json", neurons=N, shape=SHAPE)
    assert d["sender_ended"] and d["errors"] == 0
    assert d["frames"] + d["lost_frames"] == d["frames_sent"]
    assert d["records"]["lost"] == 0 and d["records"]["write_errors"] == 0 and d["records"]["clean_stop"]
    assert d["triggers"]["fired"] == d["triggers"]["recorded"]


def test_recorder_queue_is_bounded_and_waits_instead_of_dropping(tmp_path, monkeypatch):
    from rtdecode.outputs import record

    real = record._atomic_write

    def slow_disk(path, write):
        if path.parent.name == "chunks":
            time.sleep(0.05)
        real(path, write)

    monkeypatch.setattr(record, "_atomic_write", slow_disk)
    rec = Recorder(tmp_path / "s", 3, (2, 2), chunk_s=1.0, fps=2, max_backlog=2)  # 2 records per chunk
    for k in range(40):
        rec.add(k, k / 2, np.full(3, k, np.float32), np.zeros((2, 2), np.float32), (0, k), (0, k), 0.0)
        assert rec.backlog <= 2
    assert rec.blocked_s > 0 and rec.backlog_max == 2  # the live loop waited for the disk...
    rec.close()
    s = read_session(tmp_path / "s")  # ...and nothing was dropped
    assert summarize(s)["frames"] == 40 and summarize(s)["gaps"] == 0 and s["end"]["lost_records"] == 0
