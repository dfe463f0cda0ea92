"""Trigger rules, the engine's fail-safe, and the sinks on loopback."""

import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.sources import wire
from rtdecode.errors import ConfigError
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.triggers import CallableRule, LuminanceRule, MotionEnergyRule, SimilarityRule, TriggerEngine
from rtdecode.outputs.triggers.sinks import NetworkEventsSink, ZmqSink

SHAPE = (36, 64)


def test_similarity_needs_k_consecutive_frames_and_respects_refractory(rng):
    target = rng.uniform(0, 255, SHAPE).astype(np.float32)
    other = rng.uniform(0, 255, SHAPE).astype(np.float32)
    rule = SimilarityRule("face", target, threshold=0.8, consecutive=3, refractory_s=1.0)
    frames = [other, target, target, target, target, target, target, other]
    fired = [rule.update(f, t * 0.1) for t, f in enumerate(frames)]
    assert fired == [False, False, False, True, False, False, False, False]  # 3 in a row, then refractory
    assert rule.update(target, 2.0) is False and rule.update(target, 2.1) is False and rule.update(target, 2.2)


def test_refractory_runs_on_this_pcs_clock_and_suppressed_firings_do_not_start_it():
    """Issue 27, class 2: the engine gives the rules time.monotonic(), never the sender's `t`; a frame
    stamped 1e6 s ahead can no longer put the last firing beyond every later frame."""
    bright = np.full(SHAPE, 200, np.float32)
    rule = LuminanceRule("bright", 100.0, SHAPE, refractory_s=1.0)
    assert rule.update(bright, fire=False)  # suppressed (a stale frame): reported, no refractory
    assert not rule.update(bright, fire=False)  # reported at most once per refractory period
    assert rule.update(bright)  # the first fresh frame fires at once
    sink = type("Sink", (), {"slow": False, "fire": lambda self, e: True})()
    engine = TriggerEngine([LuminanceRule("b", 100.0, SHAPE, refractory_s=0.05)], [sink])
    assert engine.on_decoded(bright, 1e6 + time.time(), 0.0, time.perf_counter()) == 1  # t from the future
    time.sleep(0.06)
    assert engine.on_decoded(bright, time.time(), 0.0, time.perf_counter()) == 1  # not silenced
    assert engine.on_decoded(bright, time.time(), 0.0, time.perf_counter(), suppress="clock") == 0
    assert engine.stats()["suppressed_clock"] == 1 and engine.stats()["fired"] == 2


def test_luminance_motion_and_callable_rules():
    region = np.zeros(SHAPE, bool)
    region[:10, :10] = True
    lum = LuminanceRule("bright", 200, SHAPE, region, refractory_s=0)
    dark, bright = np.zeros(SHAPE, np.float32), np.full(SHAPE, 255, np.float32)
    assert [lum.update(f, i) for i, f in enumerate([dark, bright, dark])] == [False, True, False]
    below = LuminanceRule("dark", 10, SHAPE, region, below=True, refractory_s=0)
    assert below.update(dark, 0)
    motion = MotionEnergyRule("move", 50, SHAPE, refractory_s=0)
    assert [motion.update(f, i) for i, f in enumerate([dark, dark, bright, bright])] == [False, False, True, False]
    user = CallableRule("user", lambda f: f.mean() > 100)
    assert not user.update(dark, 0) and user.update(bright, 5)


def test_bad_rules_are_refused():
    with pytest.raises(ConfigError, match="consecutive"):
        LuminanceRule("x", 1, SHAPE, consecutive=0)
    with pytest.raises(ConfigError, match="non-empty boolean mask"):
        LuminanceRule("x", 1, SHAPE, region=np.zeros((3, 3), bool))
    with pytest.raises(ConfigError, match="constant"):
        SimilarityRule("x", np.ones(SHAPE), 0.5)
    with pytest.raises(ConfigError, match="not callable"):
        CallableRule("x", 3)


def test_engine_sends_on_the_wire_records_and_fails_safe():
    pub = Publisher()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"trigger")
    sub.connect(pub.endpoint)
    time.sleep(0.2)
    recorded = []
    engine = TriggerEngine([LuminanceRule("bright", 200, SHAPE, refractory_s=0)], [ZmqSink(pub)],
                           max_lag_s=0.05, record=recorded.append)
    bright = np.full(SHAPE, 255, np.float32)
    assert engine.on_decoded(bright, 1.0, 0.002, time.perf_counter(), trial=3, frame=40) == 1
    assert sub.poll(2000)
    msg = wire.decode(sub.recv_multipart())
    assert msg.topic == "trigger" and msg.header["rule"] == "bright" and msg.header["frame"] == 40
    assert recorded[0]["trial"] == 3
    # The pipeline falls behind: triggers go off and stay off, and the stats say why.
    assert engine.on_decoded(bright, 1.1, 0.2, time.perf_counter()) == 0
    assert engine.on_decoded(bright, 1.2, 0.001, time.perf_counter()) == 0
    st = engine.stats()
    assert not st["enabled"] and "behind" in st["disabled_reason"] and st["fired"] == 1
    engine.enable()
    assert engine.on_decoded(bright, 1.3, 0.001, time.perf_counter()) == 1
    engine.close()
    sub.close()
    pub.close()


def test_network_events_sink_pulses_a_ttl_line_off_the_live_thread():
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port("tcp://127.0.0.1")
    got = []

    def gui():  # answers like the Open Ephys GUI's Network Events plugin, acquiring
        while len(got) < 3 and rep.poll(5000):
            cmd = rep.recv_string()
            got.append(cmd)
            if cmd == "IsAcquiring":
                rep.send_string("1")
                continue
            line, state = (kv.split("=")[1] for kv in cmd.split()[1:])
            rep.send_string(f"TTLHandled: Line={line} State={state}")

    th = threading.Thread(target=gui)
    th.start()
    engine = TriggerEngine([CallableRule("always", lambda f: True, refractory_s=0)],
                           [NetworkEventsSink(port=port, line=4, width_s=0.005)])
    engine.on_decoded(np.zeros(SHAPE, np.float32), 0.0, 0.001, time.perf_counter())
    th.join(timeout=10)
    engine.close()
    rep.close()
    assert got == ["IsAcquiring", "TTL Line=4 State=1", "TTL Line=4 State=0"]
    assert engine.sink_failures == 0
