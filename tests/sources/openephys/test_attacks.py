"""Issue 12's attacks on the Open Ephys clients, over loopback sockets: each hostile message is
counted under a fixed reason and the client keeps delivering the valid messages after it."""

import json
import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.network_events import NetworkEventsClient
from rtdecode.sources.rejects import REASONS


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _xpub(ctx):
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.LINGER, 1000)
    s.bind("tcp://127.0.0.1:*")
    return s, int(s.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])


def _ttl_with(num, **content):
    frames = ziw.encode_ttl(num, "s", 100, 5, 2, 1, 4, 1.0)
    header = json.loads(frames[1])
    header["content"].update(content)
    return [frames[0], json.dumps(header).encode(), frames[2]]


def _spike_with(num, **fields):
    frames = ziw.encode_spike(num, "s", 1, "e", 7, 0, [1.0], np.zeros((1, 4), np.float32), 1.0)
    header = json.loads(frames[1])
    header["spike"].update(fields)
    return [frames[0], json.dumps(header).encode(), frames[2]]


ZI_ATTACKS = {
    "ttl source_node abc": _ttl_with(2, source_node="abc"),
    "ttl source_node [1]": _ttl_with(2, source_node=[1]),
    "ttl source_node 1e999": [ziw.EVENT_ENVELOPE,
                              _ttl_with(2)[1].replace(b'"source_node": 100', b'"source_node": 1e999'),
                              _ttl_with(2)[2]],
    "spike sorted_id x": _spike_with(2, sorted_id="x"),
    "deeply nested header": [ziw.EVENT_ENVELOPE, b'{"message_num": 2, "x": ' + b"[" * 100000 + b"]" * 100000 + b"}",
                             b""],
    "data num_samples 2**40": [ziw.DATA_ENVELOPE, json.dumps({"message_num": 2, "type": "data", "content": {
        "stream": "s", "channel_num": 0, "num_samples": 2**40, "sample_num": 0, "sample_rate": 1.0}}).encode(), b""],
}


@pytest.mark.parametrize("name", list(ZI_ATTACKS))
def test_zmq_interface_survives_each_attack(ctx, name):
    pub, port = _xpub(ctx)
    client = zi.ZmqInterfaceClient(data_port=port, heartbeat_interval_s=3600, context=ctx)
    try:
        assert pub.poll(5000)
        pub.recv()
        pub.send_multipart(ziw.encode_ttl(1, "s", 100, 5, 2, 1, 4, 1.0))
        pub.send_multipart(ZI_ATTACKS[name])
        pub.send_multipart(ziw.encode_ttl(3, "s", 100, 6, 2, 0, 4, 1.0))
        items = []
        deadline = time.monotonic() + 5
        while len(items) < 2 and time.monotonic() < deadline:
            items += client.poll(50)
    finally:
        client.close()
        pub.close()
    assert [i.sample_num for i in items] == [5, 6]
    assert client.n_rejected == 1 and set(client.rejected) <= set(REASONS)
    assert client.missing_messages == 1  # message 2 was the rejected one


def test_zmq_interface_tables_are_bounded(ctx):
    """Stray streams: at most MAX_STREAMS kept, the rest refused; a block that never completes holds
    at most MAX_PENDING_CHANNELS channels."""
    client = zi.ZmqInterfaceClient(data_port=9, heartbeat_interval_s=3600, context=ctx)
    other = zi.ZmqInterfaceClient(data_port=9, heartbeat_interval_s=3600, context=ctx)
    out = []
    try:
        for k in range(100):
            client.handle(ziw.encode_data(k + 1, f"rogue{k}", 0, "c", 0, 1000.0, np.zeros(4, np.float32), 0.0), out)
        for ch in range(zi.MAX_PENDING_CHANNELS + 10):  # the first block of a stream: its width is unknown
            other.handle(ziw.encode_data(ch + 1, "s", ch, "c", 10, 1000.0, np.zeros(4, np.float32), 0.0), out)
    finally:
        client.close()
        other.close()
    assert len(client.streams) == zi.MAX_STREAMS and dict(client.rejected) == {"limit": 100 - zi.MAX_STREAMS}
    assert len(other.streams["s"].pending.channels) == zi.MAX_PENDING_CHANNELS
    assert dict(other.rejected) == {"limit": 10}


def test_zmq_interface_absurd_message_num_is_a_restart(ctx):
    client = zi.ZmqInterfaceClient(data_port=9, heartbeat_interval_s=3600, context=ctx)
    out = []
    try:
        client.handle(ziw.encode_ttl(1, "s", 100, 5, 2, 1, 4, 1.0), out)
        client.handle(ziw.encode_ttl(2**52, "s", 100, 5, 2, 1, 4, 1.0), out)
    finally:
        client.close()
    assert client.missing_messages == 0 and client.message_restarts == 1


class _Router:
    """Answers each REQ request with `parts` (a list of frames: two parts is the attack)."""

    def __init__(self, ctx, parts):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.port = int(self.sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.parts, self.requests = parts, 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            if self.sock.poll(20):
                ident, empty, _ = self.sock.recv_multipart()
                self.requests += 1
                self.sock.send_multipart([ident, empty] + self.parts)

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()


def test_a_two_part_heartbeat_reply_does_not_wedge_the_client(ctx):
    server = _Router(ctx, [b"heartbeat received", b"extra part"])
    client = zi.ZmqInterfaceClient(data_port=9, heartbeat_port=server.port, heartbeat_interval_s=0.05,
                                   heartbeat_timeout_s=1.0, context=ctx)
    try:
        deadline = time.monotonic() + 10
        while client.heartbeats_answered < 3 and time.monotonic() < deadline:
            client.poll(20)  # before the fix: ZMQError EFSM on the next send
    finally:
        client.close()
        server.close()
    assert client.heartbeats_answered >= 3 and client.bad_heartbeat_replies >= 3
    assert client.rejected["framing"] >= 3


def test_network_events_two_part_reply_is_refused_and_the_socket_reset(ctx):
    server = _Router(ctx, [b"TTLHandled: Line=1 State=1", b"more"])
    client = NetworkEventsClient(port=server.port, timeout_s=2.0, context=ctx)
    try:
        assert client.ttl(1, 1) is False
        assert client.ttl(1, 0) is False  # the REQ can still send
    finally:
        client.close()
        server.close()
    assert client.errors["bad reply"] == 2 and server.requests == 2


def test_event_broadcaster_survives_deep_json_and_hostile_fields(ctx):
    pub, port = _xpub(ctx)
    client = eb.EventBroadcasterClient(port=port, context=ctx)
    good = eb.encode_ttl("s", 1, 30000.0, "c", 5, 0, True)
    attacks = [
        [good[0], b"[" * 20000 + b"]" * 20000],  # under the size limit: refused by the depth check
        [good[0], good[1].replace(b'"source_node": 1', b'"source_node": "abc"')],
        [eb.encode_spike("s", 1, "e", 30000.0, 5, 0, [1.0])[0],
         json.dumps({"event_type": "spike", "num_channels": 10**9, "source_node": 1, "sample_rate": 1.0,
                     "sample_number": 1, "sorted_id": 0}).encode()],
        [good[0], good[1].replace(b'"state": true', b'"state": 7')],
    ]
    try:
        assert pub.poll(5000)
        pub.recv()
        for a in attacks:
            pub.send_multipart(a)
        pub.send_multipart(good)
        ev = client.receive(5000)
    finally:
        client.close()
        pub.close()
    assert isinstance(ev, eb.BroadcastTtl) and ev.sample_number == 5
    assert client.n_rejected == len(attacks) and set(client.rejected) <= set(REASONS)


def test_zmq_interface_absurd_sample_jump_is_a_restart(ctx):
    client = zi.ZmqInterfaceClient(data_port=9, heartbeat_interval_s=3600, context=ctx, n_channels=1)
    out = []
    try:
        for num, s in enumerate([0, 100, 2**40, 2**40 + 100]):
            client.handle(ziw.encode_data(num + 1, "s", 0, "c", s, 1000.0, np.zeros(100, np.float32), 0.0), out)
    finally:
        client.close()
    assert len(out) == 4 and dict(client.missing_samples) == {} and client.sample_restarts["s"] == 1
