"""A sender that stops and restarts mid-stream is detected, reported and followed (no bogus gap)."""

import hashlib
import logging
import threading
import time

import numpy as np
import pytest
import zmq
from tests.sources.openephys.helpers import need_recording

from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.emulator import Emulator
from rtdecode.sources.openephys.recording import load_recording
from rtdecode.sources.probe import probe


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _restart_on_same_port(rec, port, ctx, timeout_s=5.0, **kw):
    """A new emulator on `port` once the old one has let it go."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Emulator(rec, data_port=port, context=ctx, **kw)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _wait(cond, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_zmq_interface_client_follows_emulator_restart(ctx, caplog):
    rec = load_recording(need_recording())
    cont = rec.continuous[0]
    channels = [0, 3]
    a = Emulator(rec, data_port=0, broadcaster_port=None, speed=1.0, block_size=1000, channels=channels, context=ctx)
    port = a.data_port
    client = zi.ZmqInterfaceClient(data_port=port, heartbeat_interval_s=0.2, context=ctx)
    items = []
    b = None
    try:
        a.start()
        _wait(lambda: (items.extend(client.poll(20)) or True)
              and sum(isinstance(i, ziw.ContinuousChunk) for i in items) >= 3)
        a.close()  # the sender dies mid-stream (real-time replay: far from its end)
        with caplog.at_level(logging.WARNING):
            b = _restart_on_same_port(rec, port, ctx, broadcaster_port=None, speed=0, block_size=1000,
                                      channels=channels)
            b.start()
            n0 = len(items)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                items += client.poll(50)
                if b.stats and client.sock.poll(300) == 0:
                    break
            items += client.flush()
            b.wait(10)
    finally:
        client.close()
        a.close()
        if b is not None:
            b.close()
    chunks = [i for i in items if isinstance(i, ziw.ContinuousChunk)]
    cut = next(k for k in range(1, len(chunks)) if chunks[k].sample_num < chunks[k - 1].sample_num)
    before, after = chunks[:cut], chunks[cut:]  # (some of A's blocks may arrive after it closed)
    assert n0 > 0 and 3 <= len(before) < 100
    assert [c.sample_num for c in before] == [40091 + 1000 * k for k in range(len(before))]
    # every block of the second run arrived, from its first sample, complete
    assert after[0].sample_num == int(cont.sample_numbers[0])
    assert [c.sample_num for c in after] == [40091 + 1000 * k for k in range(132)]
    assert all(c.complete and c.channel_nums == channels for c in after)
    np.testing.assert_array_equal(np.concatenate([c.data for c in after], axis=1),
                                  cont.microvolts(channels))
    # the restart is counted and logged; no bogus message or sample gap
    assert client.message_restarts == 1
    assert client.missing_messages == 0 and not client.missing_samples
    assert any("plugin restarted" in m for m in caplog.messages)
    ttl = [i.sample_num for i in items if isinstance(i, ziw.TtlEvent)]
    net = max(rec.ttl, key=lambda t: t.sample_numbers.size)
    assert ttl[-128:] == sorted(net.sample_numbers.tolist())  # the second run's TTLs, all of them, last
    assert client.n_rejected == 0


def test_probe_reports_emulator_restart(ctx, caplog):
    rec = load_recording(need_recording())
    cont = rec.continuous[0]
    a = Emulator(rec, data_port=0, broadcaster_port=None, speed=1.0, block_size=1024, context=ctx)
    port = a.data_port
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", probe(f"tcp://127.0.0.1:{port}", "openephys",
                                                                      seconds=40, idle_s=2.0, context=ctx)),
                          daemon=True)
    b = None
    with caplog.at_level(logging.WARNING):
        try:
            th.start()
            a.start()
            _wait(lambda: a.blocks_sent >= 4)
            a.close()
            b = _restart_on_same_port(rec, port, ctx, broadcaster_port=None, speed=0, block_size=1024)
            b.start()
            b.wait(30)
            th.join(45)
        finally:
            a.close()
            if b is not None:
                b.close()
    r = box["r"]
    s = r["streams"][cont.stream]
    n = cont.data.shape[0]
    first_run = s["samples"] - n  # what arrived before the restart
    assert 4 * 1024 <= first_run < n
    assert r["restarts"] == 1 and r["missing_messages"] == 0 and s["missing_samples"] == 0
    assert r["ttl"] >= 128 and r["rejected"] == 0
    assert any("plugin restarted" in m for m in caplog.messages)
    # checksum: each channel's samples of the first (cut) run, then of the whole second run
    uv = cont.microvolts()
    expected = hashlib.sha256(np.ascontiguousarray(
        np.concatenate([uv[:, :first_run], uv], axis=1), "<f4").tobytes()).hexdigest()
    assert s["sha256"] == expected
