"""`rtdecode probe` against the emulator replaying the real Open Ephys recording, and rtframe senders."""

import hashlib
import json
import logging
import threading
import time

import numpy as np
import pytest
import zmq

from tests.sources.openephys.helpers import need_recording, wait_subscribed, xpub

from rtdecode.sources import wire
from rtdecode.errors import ConfigError
from rtdecode.sources.openephys.emulator import Emulator
from rtdecode.sources.openephys.recording import load_recording
from rtdecode.sources.probe import add_probe_parser, cmd_probe, parse_address, probe

log = logging.getLogger(__name__)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _in_thread(fn, **kw):
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", fn(**kw)), daemon=True)
    th.start()
    return th, box


def _channel_major_sha(cont, channels=None) -> str:
    uv = cont.data[:, channels if channels is not None else slice(None)].T.astype(np.float32) \
        * cont.bit_volts[channels if channels is not None else slice(None), None].astype(np.float32)
    return hashlib.sha256(np.ascontiguousarray(uv, "<f4").tobytes()).hexdigest()


def test_probe_openephys_real_recording_checksum_and_counts(ctx, tmp_path):
    rec = load_recording(need_recording())
    cont = rec.continuous[0]
    emu = Emulator(rec, data_port=0, broadcaster_port=None, speed=0, block_size=1024, context=ctx)
    th, box = _in_thread(probe, address=f"tcp://127.0.0.1:{emu.data_port}", protocol="openephys",
                         seconds=30, idle_s=1.0, context=ctx)
    try:
        emu.start()
        emu.wait(30)
        th.join(35)
    finally:
        emu.close()
    r = box["r"]
    s = r["streams"][cont.stream]
    assert s["channels"] == cont.data.shape[1] == 16 and s["channel_nums"] == list(range(16))
    assert s["channel_names"] == cont.channel_names and s["sample_rate"] == cont.sample_rate == 40000.0
    assert s["samples"] == cont.data.shape[0] == 131362 and s["samples_per_channel_equal"]
    assert s["first_sample"] == int(cont.sample_numbers[0]) and s["missing_samples"] == 0
    assert s["sha256"] == _channel_major_sha(cont)  # continuous.dat x bit_volts, float32, channel-major
    assert r["ttl"] == sum(t.sample_numbers.size for t in rec.ttl) == 128
    assert r["spikes"] == sum(x.sample_numbers.size for x in rec.spikes) == 1379
    assert sum(r["spikes_by_electrode"].values()) == 1379
    assert r["messages"] == emu.stats["messages"] and r["missing_messages"] == 0
    assert r["rejected"] == 0 and r["restarts"] == 0
    assert r["heartbeats_answered"] >= 1 and r["stopped_because"].startswith("idle")
    assert "x_real_time" in r  # reported (None when every message was already queued: no active time), never asserted
    log.warning("probe throughput on the real recording: %sx real time (%s s of data in %s s)",
                r["x_real_time"], r["data_s"], r["active_s"])
    # the TTLs/spikes hash the same through the Event Broadcaster
    assert len(r["events_sha256"]) == 64


def test_probe_eventbroadcaster_matches_zmq_interface_events(ctx):
    rec = load_recording(need_recording())
    emu = Emulator(rec, data_port=0, broadcaster_port=0, speed=0, block_size=4096, context=ctx)
    th1, b1 = _in_thread(probe, address=str(emu.broadcaster_port), protocol="eventbroadcaster",
                         seconds=30, idle_s=1.0, context=ctx)
    th2, b2 = _in_thread(probe, address=f"127.0.0.1:{emu.data_port}", protocol="openephys",
                         seconds=30, idle_s=1.0, context=ctx)
    try:
        emu.start()
        emu.wait(30)
        th1.join(35)
        th2.join(35)
    finally:
        emu.close()
    eb, zi = b1["r"], b2["r"]
    assert eb["ttl"] == 128 and eb["spikes"] == 1379 and eb["rejected"] == 0 and eb["restarts"] == 0
    assert eb["events_sha256"] == zi["events_sha256"]


def test_probe_rtframe_counts_gaps_restart_and_hashes_frames(ctx, caplog):
    pub, port = xpub(ctx)
    th, box = _in_thread(probe, address=f"tcp://127.0.0.1:{port}", protocol="rtframe", seconds=30,
                         idle_s=1.0, context=ctx)
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 60000, size=(12, 8, 6)).astype(np.uint16)
    sha = hashlib.sha256()
    wait_subscribed(pub)
    with caplog.at_level(logging.WARNING):
        seq = wire.Sequencer()
        for k, f in enumerate(frames[:6]):
            pub.send_multipart(wire.encode("stim", seq(), time.time(), None, frame=k, trial=0))
            if k == 3:
                seq()  # one message lost
            pub.send_multipart(wire.encode("frame", seq(), time.time(), f, frameNumberAcq=k + 1, channel=1, plane=1))
            sha.update(f.tobytes())
        pub.send_multipart([b"frame", b"{broken", b""])
        pub.close(linger=1000)
        # the sender restarts on the same port: seq from 0 again
        pub2 = _rebind_xpub(ctx, port)
        wait_subscribed(pub2)
        seq = wire.Sequencer()
        for k, f in enumerate(frames[6:]):
            pub2.send_multipart(wire.encode("frame", seq(), time.time(), f, frameNumberAcq=k + 1, channel=1, plane=1))
            sha.update(f.tobytes())
        pub2.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True))
        th.join(35)
        pub2.close()
    r = box["r"]
    assert r["frames"] == 12 and r["topics"]["stim"]["messages"] == 6
    assert r["topics"]["frame"]["shapes"] == {"<u2 [8, 6]": 12}
    assert r["dropped"] == 1 and r["restarts"] == 1 and r["rejected"] == 1 and r["ended"] == 1
    assert r["frame_sha256"] == sha.hexdigest()
    assert any("publisher restarted" in m for m in caplog.messages)


def _rebind_xpub(ctx, port, timeout_s=5.0):
    deadline = time.monotonic() + timeout_s
    while True:
        s = ctx.socket(zmq.XPUB)
        s.setsockopt(zmq.LINGER, 1000)
        try:
            s.bind(f"tcp://127.0.0.1:{port}")
            return s
        except zmq.ZMQError:
            s.close(linger=0)
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_probe_cli_writes_json_and_fails_when_nothing_arrives(tmp_path, capsys):
    import argparse

    ap = argparse.ArgumentParser()
    add_probe_parser(ap.add_subparsers(dest="command"))
    pub, port = xpub(zmq.Context.instance())  # bound, silent
    try:
        args = ap.parse_args(["probe", str(port), "--protocol", "rtframe", "--seconds", "0.3",
                              "--json", str(tmp_path / "p.json")])
        assert cmd_probe(args, False) == 1
    finally:
        pub.close(linger=0)
    out = capsys.readouterr().out
    assert "nothing arrived" in out
    rep = json.loads((tmp_path / "p.json").read_text())
    assert rep["messages"] == 0 and rep["stopped_because"] == "0.3 s elapsed"


def test_probe_bad_arguments():
    assert parse_address("tcp://10.0.0.2:5556") == ("10.0.0.2", 5556)
    assert parse_address("5556") == ("127.0.0.1", 5556)
    with pytest.raises(ConfigError, match="port 70000"):
        parse_address("localhost:70000")
    with pytest.raises(ConfigError, match="not one of rtframe, openephys, eventbroadcaster"):
        probe("5556", "zmq")
