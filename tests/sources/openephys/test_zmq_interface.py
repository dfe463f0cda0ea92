"""ZMQ Interface and Event Broadcaster clients against the emulator (real recording) and fake publishers."""

import json
import time

import numpy as np
import pytest
import zmq
from tests.sources.openephys.helpers import FakeServer, need_recording, wait_subscribed, xpub

from rtdecode.sources.openephys import OpenEphysProtocolError
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.emulator import Emulator
from rtdecode.sources.openephys.recording import load_recording


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _drain(client, ebc, emu, timeout_s=30.0):
    items, events = [], []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        items += client.poll(50)
        while (e := ebc.receive(0)) is not None:
            events.append(e)
        if emu.stats and client.sock.poll(300) == 0 and ebc.sock.poll(0) == 0:
            break
    return items + client.flush(), events


def test_oe_emulator_roundtrip_real_recording(ctx):
    path = need_recording()
    rec = load_recording(path)
    cont = rec.continuous[0]
    channels = [0, 5, 15]
    emu = Emulator(rec, data_port=0, broadcaster_port=0, speed=0, block_size=1000, channels=channels, context=ctx)
    client = zi.ZmqInterfaceClient(data_port=emu.data_port, context=ctx)
    ebc = eb.EventBroadcasterClient(port=emu.broadcaster_port, context=ctx)
    try:
        emu.start()
        items, events = _drain(client, ebc, emu)
        emu.wait(10)
    finally:
        emu.close()
        client.close()
        ebc.close()
    chunks = [i for i in items if isinstance(i, ziw.ContinuousChunk)]
    ttls = [i for i in items if isinstance(i, ziw.TtlEvent)]
    spikes = [i for i in items if isinstance(i, ziw.SpikeEvent)]
    # continuous: int16 file * bit_volts, for the channels sent, in order, with no sample lost
    assert all(c.channel_nums == channels and c.complete for c in chunks)
    assert chunks[0].sample_num == int(cont.sample_numbers[0]) == 40091
    assert [c.sample_num for c in chunks] == [40091 + k * 1000 for k in range(len(chunks))]
    got = np.concatenate([c.data for c in chunks], axis=1)
    expected = cont.data[:, channels].T.astype(np.float32) * np.float32(cont.bit_volts[0])
    assert got.shape == (3, 131362)
    np.testing.assert_array_equal(got, expected)
    assert chunks[0].channel_names == ["CH1", "CH6", "CH16"] and chunks[0].sample_rate == 40000.0
    # TTL events: same count, lines, states and sample numbers as the files
    n_ttl = sum(t.sample_numbers.size for t in rec.ttl)
    assert len(ttls) == n_ttl == 128
    net = rec.ttl[[t.sample_numbers.size for t in rec.ttl].index(128)]
    assert [t.sample_num for t in ttls] == sorted(net.sample_numbers.tolist())
    assert sorted((t.sample_num, t.line, t.state) for t in ttls) == \
        sorted(zip(net.sample_numbers.tolist(), net.lines.tolist(), net.states.tolist()))
    assert ttls[0].source_node == 108 and ttls[0].word == int(net.words[0])
    # spikes: same count; a waveform equals the file's int16 * bit_volts
    n_spk = sum(s.sample_numbers.size for s in rec.spikes)
    assert len(spikes) == n_spk == 1379
    st1 = rec.spikes[0]
    mine = [s for s in spikes if s.electrode == st1.electrode]
    assert len(mine) == st1.sample_numbers.size
    np.testing.assert_array_equal(mine[3].waveform, st1.waveforms[3].astype(np.float32) * np.float32(0.05000000074505806))
    assert mine[3].sample_num == int(st1.sample_numbers[3]) and mine[3].waveform.shape == (2, 40)
    # nothing lost, nothing rejected, heartbeat answered
    c = client.counts()
    assert c["missing_messages"] == 0 and c["rejected"] == 0 and not c["missing_samples"]
    assert c["heartbeats_answered"] >= 1
    assert emu.stats["messages"] == len(chunks) * 3 + 128 + 1379
    # Event Broadcaster saw the same events
    b_ttl = [e for e in events if isinstance(e, eb.BroadcastTtl)]
    b_spk = [e for e in events if isinstance(e, eb.BroadcastSpike)]
    assert len(b_ttl) == 128 and len(b_spk) == 1379 and ebc.n_rejected == 0
    assert b_ttl[0].channel_name == "Network Events output" and b_ttl[0].sample_rate == 40000.0
    first = [e for e in b_spk if e.electrode == st1.electrode][3]
    assert first.num_channels == 2
    assert first.amplitudes == pytest.approx(list(-mine[3].waveform[:, st1.pre_peak_samples + 1]))


def _block(num, sample_num, channels=(0, 1), n=10):
    return [ziw.encode_data(num + k, "s", ch, f"CH{ch + 1}", sample_num, 1000.0,
                            np.full(n, ch + sample_num, np.float32), 1.0) for k, ch in enumerate(channels)]


def test_oe_gap_detection(ctx):
    pub, port = xpub(ctx)
    client = zi.ZmqInterfaceClient(data_port=port, heartbeat_interval_s=3600, context=ctx)
    try:
        wait_subscribed(pub)
        msgs = _block(1, 0) + _block(3, 10)
        block3 = _block(5, 20)
        msgs.append(block3[0])  # block3[1] (message_num 6) is dropped
        msgs += _block(7, 30)
        msgs += _block(9, 50)  # samples 40..49 never sent (with their messages 9..10 renumbered: no msg gap)
        for m in msgs:
            pub.send_multipart(m)
        items = []
        deadline = time.monotonic() + 5
        while len(items) < 5 and time.monotonic() < deadline:
            items += client.poll(50)
        items += client.flush()
    finally:
        client.close()
        pub.close()
    assert [c.sample_num for c in items] == [0, 10, 20, 30, 50]
    assert [c.complete for c in items] == [True, True, False, True, True]
    assert items[2].channel_nums == [0]
    np.testing.assert_array_equal(items[1].data[1], np.full(10, 11, np.float32))
    assert client.missing_messages == 1
    assert client.missing_samples["s"] == 10
    assert client.incomplete_chunks == 1


def test_oe_malformed_messages_counted(ctx):
    pub, port = xpub(ctx)
    client = zi.ZmqInterfaceClient(data_port=port, heartbeat_interval_s=3600, context=ctx)
    good = ziw.encode_ttl(1, "s", 100, 5, 2, 1, 4, 1.0)
    bad = [
        [b"DATA", good[1], good[2]],  # envelope without its NUL
        [ziw.EVENT_ENVELOPE, b"{not json", good[2]],
        [ziw.EVENT_ENVELOPE, good[1], good[2][:9]],  # TTL payload 9 bytes
        [ziw.DATA_ENVELOPE, json.dumps({"message_no": 3, "type": "data", "content": {}}).encode(), b""],
        [ziw.EVENT_ENVELOPE, json.dumps({"message_num": 4, "type": "spike", "content": {}}).encode(), b""],
        ziw.encode_data(5, "s", 0, "CH1", 0, 1000.0, np.zeros(4, np.float32), 1.0)[:2] + [b"\x00" * 15],
        [b"x"],
    ]
    try:
        wait_subscribed(pub)
        for m in bad:
            pub.send_multipart(m)
        pub.send_multipart(ziw.encode_ttl(6, "s", 100, 5, 2, 1, 4, 1.0))
        items = []
        deadline = time.monotonic() + 5
        while not items and time.monotonic() < deadline:
            items += client.poll(50)
    finally:
        client.close()
        pub.close()
    assert len(items) == 1 and isinstance(items[0], ziw.TtlEvent)
    assert (items[0].line, items[0].state, items[0].word, items[0].sample_num) == (2, 1, 4, 5)
    assert client.n_rejected == len(bad)


def test_oe_event_broadcaster_malformed():
    with pytest.raises(OpenEphysProtocolError):
        eb.parse_broadcast([b"\x00", b"{}"])
    with pytest.raises(OpenEphysProtocolError):
        eb.parse_broadcast([b"\x00\x00", b'{"event_type": "spike"}'])
    with pytest.raises(OpenEphysProtocolError):
        no_amp2 = (b'{"event_type": "spike", "num_channels": 2, "source_node": 1, '
                   b'"sample_rate": 1.0, "sample_number": 3, "sorted_id": 0, "amp1": 1.0}')
        eb.parse_broadcast([b"\x01\x00", no_amp2])
    ev = eb.parse_broadcast(eb.encode_ttl("s", 7, 30000.0, "TTL", 12, 3, True))
    assert ev == eb.BroadcastTtl("s", 7, 30000.0, "TTL", 12, 3, True)


def test_oe_heartbeat_reply(ctx):
    path = need_recording()
    emu = Emulator(path, data_port=0, broadcaster_port=None, speed=0, context=ctx)
    client = zi.ZmqInterfaceClient(data_port=emu.data_port, application="test", context=ctx)
    try:
        emu.start(replay=False)
        assert client.heartbeat(timeout_s=5) == "heartbeat received"
        assert client.heartbeat(timeout_s=5) == "heartbeat received"
        deadline = time.monotonic() + 2
        while client.uuid not in emu.heartbeats and time.monotonic() < deadline:
            time.sleep(0.01)
        assert emu.heartbeats[client.uuid]["application"] == "test"
        assert emu.heartbeats[client.uuid]["count"] == 2
    finally:
        client.close()
        emu.close()


def test_oe_heartbeat_lazy_reconnect(ctx):
    seen = []

    def reply(text):  # the first heartbeat gets no answer, later ones do
        seen.append(json.loads(text))
        return None if len(seen) == 1 else "heartbeat received"

    server = FakeServer(ctx, reply)
    client = zi.ZmqInterfaceClient(data_port=server.port - 1, heartbeat_timeout_s=0.2, context=ctx)
    try:
        assert client.heartbeat(timeout_s=0.3) is None
        assert client.heartbeat_resets == 1
        assert client.heartbeat(timeout_s=5) == "heartbeat received"
        assert seen[0]["type"] == "heartbeat" and seen[0]["uuid"] == client.uuid and "application" in seen[0]
    finally:
        client.close()
        server.close()
