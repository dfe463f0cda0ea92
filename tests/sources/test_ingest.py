"""Ingest over a real ZeroMQ socket on loopback."""

import time

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.sources.ingest import Ingest


def _pub():
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def _wait_joined(pub, ingest):
    """PUB/SUB drops messages until the subscription arrives: send probes until one gets through."""
    for _ in range(100):
        pub.send_multipart(wire.encode("stats", 0, 0.0, None))
        if ingest.receive(timeout_ms=20) is not None:
            ingest.received.clear()
            ingest.gaps = wire.GapCounter()
            return
    raise TimeoutError("subscriber never joined")


def test_valid_messages_pass_and_bad_ones_are_counted(caplog):
    pub, ep = _pub()
    ingest = Ingest([ep])
    _wait_joined(pub, ingest)
    frame = np.arange(12, dtype=np.uint16).reshape(3, 4)
    good = wire.encode("frame", 0, time.time(), frame, frameNumberAcq=1, channel=1, plane=1)
    bad = [
        [b"frame", b"{broken", b""],
        [b"frame_v2", good[1], good[2]],  # passes the SUB prefix filter, unknown topic
        [good[0], good[1], good[2][:-2]],
        [good[0], good[1].replace(b"<u2", b"|O"), good[2]],
        [b"stim", b"two frames only"],
    ]
    for b in bad:
        pub.send_multipart(b)
    pub.send_multipart(good)
    msg = ingest.receive(timeout_ms=2000)
    assert msg is not None and msg.topic == "frame"
    np.testing.assert_array_equal(msg.array, frame)
    assert msg.received > 0
    assert ingest.n_rejected == len(bad)
    assert "rejected message" in caplog.text
    # The pipeline keeps running: later messages still arrive.
    pub.send_multipart(wire.encode("frame", 1, time.time(), frame, frameNumberAcq=2, channel=1, plane=1))
    assert ingest.receive(timeout_ms=2000).header["frameNumberAcq"] == 2
    ingest.close()
    pub.close()


def test_sequence_gaps_are_counted_as_dropped():
    pub, ep = _pub()
    ingest = Ingest([ep])
    _wait_joined(pub, ingest)
    for seq in [0, 1, 2, 6, 7, 9]:
        pub.send_multipart(wire.encode("stim", seq, 0.0, None, frame=seq, trial=0))
    got = [ingest.receive(timeout_ms=2000) for _ in range(6)]
    assert [m.seq for m in got] == [0, 1, 2, 6, 7, 9]
    assert ingest.dropped == 3 + 1
    ingest.close()
    pub.close()


def test_two_publishers_keep_separate_sequence_counters():
    """ScanImage and the stimulus PC each count seq from 0: interleaving them is not a gap."""
    pub_a, ep_a = _pub()
    pub_b, ep_b = _pub()
    ingest = Ingest([ep_a, ep_b])
    for pub in (pub_a, pub_b):
        for _ in range(100):
            pub.send_multipart(wire.encode("stats", 0, 0.0, None))
            if ingest.receive(timeout_ms=20) is not None:
                break
    while ingest.receive(timeout_ms=50) is not None:
        pass
    for g in ingest.gap_counters.values():
        g.last, g.missing, g.restarts = None, 0, 0
    for seq in range(5):
        pub_a.send_multipart(wire.encode("stim", seq, 0.0, None, frame=seq, trial=0))
        pub_b.send_multipart(wire.encode("stim", seq + (2 if seq >= 3 else 0), 0.0, None, frame=seq, trial=1))
    got = [ingest.receive(timeout_ms=2000) for _ in range(10)]
    assert all(m is not None for m in got)
    assert ingest.dropped == 2 and ingest.restarts == 0  # only publisher b skipped two messages
    ingest.close()
    pub_a.close()
    pub_b.close()


def test_frames_are_views_on_the_received_message_not_copies():
    """copy=False receive: the frame's array is a read-only view on ZeroMQ's buffer (no copy of the
    frame between the socket and the chain) and stays valid after later messages arrive."""
    pub, ep = _pub()
    ingest = Ingest([ep])
    _wait_joined(pub, ingest)
    frames = [np.full((64, 64), k, np.uint16) for k in range(3)]
    for k, f in enumerate(frames):
        pub.send_multipart(wire.encode("frame", k, time.time(), f, frameNumberAcq=k + 1, channel=1, plane=1))
    got = [ingest.receive(timeout_ms=2000) for _ in frames]
    for msg, f in zip(got, frames):
        np.testing.assert_array_equal(msg.array, f)
        assert not msg.array.flags.writeable
        base = msg.array
        while isinstance(base, np.ndarray):
            base = base.base
        assert not isinstance(base, bytes)  # a copy=True receive gives a bytes copy of the payload
    ingest.close()
    pub.close()
