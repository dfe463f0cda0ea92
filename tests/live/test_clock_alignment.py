"""Stimulus-to-frame matching across publishers whose clocks differ, and hardware flip times from an
Open Ephys Event Broadcaster, on loopback sockets: the live session labels decoded and recorded
frames with the stimulus frame that was really on screen."""

import threading
import time

import numpy as np
import zmq

from rtdecode.extract.ring import ActivityRing
from rtdecode.live.session import LiveSession
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.outputs.session_reader import read_session
from rtdecode.sources import wire
from rtdecode.sources.flips import FlipAligner, TtlFlips
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.openephys.event_broadcaster import encode_ttl
from rtdecode.stage import Chain, Spec, Stage

N, FRAMES, FPS = 8, 60, 30.0
STIM_CLOCK = -0.2  # the stimulus PC's clock runs 200 ms behind the ScanImage PC's (6 frames at 30 Hz)


class Mean(Stage):
    """A stand-in decoder: (N, 1) window -> (4, 4) frame of its mean."""

    name = "mean"

    def __init__(self, n):
        self.in_spec = Spec(np.float32, (n, 1))
        self.out_spec = Spec(np.float32, (4, 4))

    def process(self, inp, out):
        out[:] = inp.mean()


def _pub(ctx):
    s = ctx.socket(zmq.PUB)
    s.setsockopt(zmq.LINGER, 0)
    port = s.bind_to_random_port("tcp://127.0.0.1")
    return s, f"tcp://127.0.0.1:{port}"


def _session(tmp_path, endpoints, flips=None):
    ingest = Ingest(endpoints)
    out = Publisher()
    rec = Recorder(tmp_path / "s", N, (4, 4), fps=FPS)
    chain = Chain([ActivityRing(N, 1), Mean(N)])
    session = LiveSession(ingest, chain, out, lag_min=0, recorder=rec, max_age_s=None, flips=flips)
    return session, ingest, out, rec


def _watch(ctx, out):
    w = ctx.socket(zmq.SUB)
    w.setsockopt(zmq.SUBSCRIBE, b"decoded")
    w.connect(out.endpoint)
    return w


def _decoded(watcher):
    got = {}
    while watcher.poll(300):
        m = wire.decode(watcher.recv_multipart())
        got[m.header["frameNumberAcq"]] = m.header
    return got


def _run(session, send, rec, watcher, to_close):
    """Run `send` in a thread against the session; returns (result, stats, decoded); closes `to_close`."""
    th = threading.Thread(target=send)
    th.start()
    try:
        res = session.run(seconds=30)
        th.join()
        stats = session.stats()
        rec.close(stats)
        decoded = _decoded(watcher)
    finally:
        for c in to_close:
            c.close()
    return res, stats, decoded


class _Paced:
    """Sends on a schedule of gaps, not of times: each message goes out its planned gap after the one
    before it really went. A late wake-up (a loaded machine) delays the rest of the schedule instead of
    sending the next message at once to catch up, which would squeeze a frame against the next stimulus
    frame and make its label a coin toss."""

    def __init__(self):
        self.planned = self.sent = None

    def wait(self, when):
        if self.planned is not None:
            d = self.sent + (when - self.planned) - time.time()
            if d > 0:
                time.sleep(d)
        self.planned, self.sent = when, time.time()


def _sleep_until(t):
    """On a schedule of times (the TTL test: a display latency is a fixed time after its stimulus)."""
    d = t - time.time()
    if d > 0:
        time.sleep(d)


def test_two_publishers_with_different_clocks_label_frames_with_the_stimulus_shown(tmp_path):
    ctx = zmq.Context.instance()
    frames_pub, frames_ep = _pub(ctx)
    stim_pub, stim_ep = _pub(ctx)
    session, ingest, out, rec = _session(tmp_path, [frames_ep, stim_ep])
    watcher = _watch(ctx, out)
    rng = np.random.default_rng(3)
    stamps = {"stim": [], "frame": []}

    def send():
        time.sleep(0.3)  # the subscriptions
        fseq, sseq = wire.Sequencer(), wire.Sequencer()
        pace = _Paced()
        for k in range(FRAMES):
            pace.wait(k / FPS)
            t = time.time() + STIM_CLOCK
            stamps["stim"].append(t)
            stim_pub.send_multipart(wire.encode("stim", sseq(), t, None, frame=k, trial=0))
            pace.wait(k / FPS + 0.010)  # the frame is acquired 10 ms after stimulus frame k appeared
            t = time.time()
            stamps["frame"].append(t)
            frames_pub.send_multipart(wire.encode("frame", fseq(), t, rng.random(N, dtype=np.float32),
                                                  frameNumberAcq=k + 1, channel=1, plane=1))
        frames_pub.send_multipart(wire.encode("stats", fseq(), time.time(), None, end=True))

    res, stats, decoded = _run(session, send, rec, watcher, [frames_pub, stim_pub, watcher, ingest, out])
    assert res.ended and res.frames == FRAMES
    # raw sender times would have labelled frame k with stimulus frame k + 6
    raw = [int(np.searchsorted(stamps["stim"], t, side="right")) - 1 for t in stamps["frame"]]
    assert np.median(np.asarray(raw) - np.arange(FRAMES)) >= 5
    a = read_session(tmp_path / "s")["arrays"]
    shown = a["shown"][:, 1]
    right = np.mean(shown == a["number"] - 1)
    assert right >= 0.9, shown
    target = np.asarray([decoded[n]["frame"] for n in sorted(decoded)])
    assert np.mean(target == np.asarray(sorted(decoded)) - 1) >= 0.9
    # what is recorded: the sender's t, and the same moment on our clock (same PC here: nearly equal)
    np.testing.assert_array_equal(a["t"], np.asarray(stamps["frame"])[a["number"] - 1])
    assert np.all(np.abs(a["local_t"] - a["t"]) < 0.05)
    ok = shown == a["number"] - 1
    # frame k's time after its stimulus frame's, as sent (10 ms, more where the sender woke late)
    gap = np.asarray(stamps["frame"]) - (np.asarray(stamps["stim"]) - STIM_CLOCK)
    assert np.all(np.abs(a["local_t"][ok] - a["shown_t"][ok] - gap[a["number"][ok] - 1]) < 0.05)
    clocks = stats["clock"]
    assert abs(clocks[stim_ep]["offset_ms"] + STIM_CLOCK * 1e3) < 50 and abs(clocks[frames_ep]["offset_ms"]) < 50


def test_ttl_flip_times_label_frames_and_measure_the_display_latency(tmp_path):
    latency, rate = 0.040, 30000.0  # the screen shows stimulus frame k 40 ms after the stim message
    ctx = zmq.Context.instance()
    frames_pub, frames_ep = _pub(ctx)
    stim_pub, stim_ep = _pub(ctx)
    ttl_pub, ttl_ep = _pub(ctx)
    flips = TtlFlips(ttl_ep, 0, FlipAligner(), context=ctx)
    session, ingest, out, rec = _session(tmp_path, [frames_ep, stim_ep], flips=flips)
    watcher = _watch(ctx, out)
    rng = np.random.default_rng(4)
    t0 = time.time() - 20.0  # Open Ephys started acquiring 20 s ago
    edges, frame_t = [], []

    def send():
        time.sleep(0.3)
        fseq, sseq = wire.Sequencer(), wire.Sequencer()
        start = time.time()
        plan = []  # (when, what, k), sent in time order from this one thread
        for k in range(FRAMES):
            plan += [(start + k / FPS, "stim", k), (start + k / FPS + latency, "edge", k),
                     (start + k / FPS + latency + 0.008, "fall", k), (start + k / FPS + 0.016, "frame", k)]
        for when, what, k in sorted(plan):
            _sleep_until(when)
            now = time.time()
            if what == "stim":
                stim_pub.send_multipart(wire.encode("stim", sseq(), now + STIM_CLOCK, None, frame=k, trial=1))
            elif what == "edge":
                n = int(round((now - t0) * rate))
                edges.append((n / rate + t0, k))
                ttl_pub.send_multipart(encode_ttl("acq", 100, rate, "TTL", n, 0, True))
            elif what == "fall":  # the end of the pulse: not a flip
                ttl_pub.send_multipart(encode_ttl("acq", 100, rate, "TTL", int(round((now - t0) * rate)), 0, False))
                ttl_pub.send_multipart([b"\x00\x00", b"{bad"])  # a bad TTL message never stops the loop
            else:
                frame_t.append(now)
                frames_pub.send_multipart(wire.encode("frame", fseq(), now, rng.random(N, dtype=np.float32),
                                                      frameNumberAcq=k + 1, channel=1, plane=1))
        time.sleep(0.2)
        frames_pub.send_multipart(wire.encode("stats", fseq(), time.time(), None, end=True))

    res, stats, decoded = _run(session, send, rec, watcher, [frames_pub, stim_pub, ttl_pub, watcher, ingest, flips, out])
    assert res.ended and res.frames == FRAMES and res.message_errors == 0
    # on screen at frame k: the last stimulus frame whose edge came before it (k - 1 here, not k)
    edge_t = np.asarray([t for t, _ in sorted(edges)])
    want = np.asarray([int(np.searchsorted(edge_t, t, side="right")) - 1 for t in frame_t])
    assert np.mean(want == np.arange(FRAMES) - 1) >= 0.8  # the schedule did what it should
    a = read_session(tmp_path / "s")["arrays"]
    got = a["shown"][:, 1]
    assert np.mean(got == want[a["number"] - 1]) >= 0.85, (got, want)
    target = np.asarray([decoded[n]["frame"] for n in sorted(decoded)])
    assert np.mean(target == want[np.asarray(sorted(decoded)) - 1]) >= 0.85
    ok = got == want[a["number"] - 1]
    matched = ok & (got >= 0)
    np.testing.assert_allclose(a["shown_t"][matched], edge_t[got[matched]], atol=0.01)
    f = stats["flips"]
    assert f["flips_matched"] >= 0.9 * FRAMES and f["flips_matched"] + f["flips_unmatched"] + f["flips_pending"] == FRAMES
    assert f["edges_unmatched"] <= 0.1 * FRAMES
    assert abs(f["display_latency_ms"]["p50"] - latency * 1e3) < 10 and f["display_latency_ms"]["p99"] is not None
    assert f["rejected_by_reason"]["not_json"] == FRAMES and f["line"] == 1
    assert abs(f["clock"]["offset_ms"] / 1e3 - t0) < 0.05
