"""The contract of every registered source protocol (rtdecode.sources.protocols), over real loopback
ZeroMQ sockets: its entry builds an ingest that satisfies SourceIngest and hands out a `frame` for
what a sender of that protocol sent, and its probe listener reports the same messages.

A new protocol needs a sender here (SENDERS): the few messages that make one frame."""

import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.live.config import parse_config
from rtdecode.sources import protocols, wire
from rtdecode.sources.interface import REQUIRED_COUNTS, SourceIngest
from rtdecode.sources.probe import probe

N = 2  # decoder inputs of the ephys protocols
IMAGE = (np.arange(8 * 6, dtype=np.int16).reshape(8, 6) * 7)


class Sender:
    """A bound XPUB (it sees its subscriber arrive) sending one protocol's messages."""

    source: dict = {}  # the protocol's own `source` keys
    extraction: dict = {"two_photon": {"rois": "rois"}}

    def __init__(self, ctx):
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def wait_subscribed(self, timeout_s=5.0):
        assert self.sock.poll(int(timeout_s * 1000)), "no subscriber arrived"
        self.sock.recv()
        time.sleep(0.1)  # every subscription of the subscriber (one per topic) in place

    def send(self) -> None:
        raise NotImplementedError

    def check(self, msg: wire.Message) -> None:
        """The frame the ingest handed out is the one sent."""
        np.testing.assert_array_equal(msg.array.reshape(IMAGE.shape), IMAGE)


class RtframeSender(Sender):
    def send(self):
        self.sock.send_multipart(wire.encode("frame", 0, time.time(), IMAGE.astype(np.uint16), frameNumberAcq=1,
                                             channel=1, plane=1))


class ScanImageZmqSender(Sender):
    def send(self):
        from rtdecode.sources.scanimage_zmq import encode_native

        self.sock.send_multipart(encode_native(IMAGE, 1, channel=1, plane=1))


class OpenEphysSender(Sender):
    """Two channels at 1 kHz, 10 ms bins: two blocks of 25 samples (a block is complete when the next
    one starts) close two bins."""

    extraction = {"ephys": {"band_hz": None, "reference": None, "threshold_uv": 0.5, "bin_ms": 10.0,
                            "block_samples": 16}}

    def send(self):
        from rtdecode.sources.openephys import zmq_interface_wire as ziw

        samples = np.zeros(25, np.float32)
        samples[3] = -5.0  # one crossing on channel 0, in bin 0
        num = 0
        for start in (0, 25):
            for ch in range(N):
                data = samples if ch == 0 and start == 0 else np.zeros(25, np.float32)
                self.sock.send_multipart(ziw.encode_data(num, "probe", ch, f"CH{ch + 1}", start, 1000.0, data,
                                                         start + 25.0))
                num += 1

    def check(self, msg):
        assert msg.header["frameNumberAcq"] == 0
        np.testing.assert_array_equal(msg.array, [1.0, 0.0])  # bin 0: the one crossing, on channel 0


class EventBroadcasterSender(Sender):
    source = {"units": ["a", "b"]}
    extraction = {"ephys": {"bin_ms": 10.0}}

    def send(self):
        from rtdecode.sources.openephys import event_broadcaster as eb

        for sample, electrode in ((3, "a"), (5, "a"), (15, "b"), (25, "b")):
            self.sock.send_multipart(eb.encode_spike("probe", 100, electrode, 1000.0, sample, 0, [1.0]))

    def check(self, msg):
        assert msg.header["frameNumberAcq"] == 0
        np.testing.assert_array_equal(msg.array, [2.0, 0.0])  # bin 0: two spikes of unit a


SENDERS = {"rtframe": RtframeSender, "scanimage_zmq": ScanImageZmqSender, "openephys": OpenEphysSender,
           "eventbroadcaster": EventBroadcasterSender}


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _sender(name, ctx) -> Sender:
    if name not in SENDERS:
        pytest.fail(f"protocol {name!r} is registered but has no sender in {__file__}: add one to SENDERS")
    return SENDERS[name](ctx)


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_the_entry_is_complete(name):
    p = protocols.get(name)
    assert p.modality in protocols.MODALITIES
    assert callable(protocols.resolve(p.ingest)) and callable(protocols.resolve(p.probe))
    if p.modality == "ephys":  # the ingest runs the extraction and the model's inputs are listed by a key
        assert callable(protocols.resolve(p.stages)) and p.inputs_key in p.source_keys
    else:
        assert p.stages is None


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_a_message_round_trips_through_the_ingest(name, ctx):
    sender = _sender(name, ctx)
    cfg = parse_config({"source": {"protocol": name, "address": sender.address, **sender.source},
                        "extraction": sender.extraction, "decoder": {"model": "model"}})
    proto = protocols.get(name)
    ingest = proto.make_ingest(cfg, proto.make_stages(cfg, N), IMAGE.nbytes)
    try:
        assert isinstance(ingest, SourceIngest)
        sender.wait_subscribed()
        sender.send()
        deadline = time.monotonic() + 10
        msg = None
        while msg is None and time.monotonic() < deadline:
            got = ingest.receive(timeout_ms=100)
            if got is not None and got.topic == "frame":
                msg = got
        assert msg is not None, f"{name}: no frame arrived; counts {ingest.counts()}"
        sender.check(msg)
        counts = ingest.counts()
        assert all(k in counts for k in REQUIRED_COUNTS), counts
        assert counts["received"]["frame"] >= 1 and ingest.n_rejected == 0 and ingest.dropped == 0, counts
    finally:
        ingest.close()
        sender.sock.close()


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_a_message_round_trips_through_the_probe(name, ctx):
    sender = _sender(name, ctx)
    box = {}
    th = threading.Thread(target=lambda: box.setdefault("r", probe(sender.address, name, seconds=10, idle_s=0.5,
                                                                    context=ctx)), daemon=True)
    th.start()
    try:
        sender.wait_subscribed()
        sender.send()
        th.join(15)
    finally:
        sender.sock.close()
    report = box["r"]
    assert report["protocol"] == name and report["received_anything"], report
    assert report["messages"] >= 1 and report["rejected"] == 0, report


def test_an_unknown_protocol_is_refused_by_the_probe_and_the_rig_file():
    from rtdecode.errors import ConfigError

    with pytest.raises(ConfigError, match="'zmq' is not one of " + protocols.valid()):
        probe("tcp://127.0.0.1:5999", "zmq", seconds=0.1)
    with pytest.raises(ConfigError, match="source.protocol: 'zmq' is not one of " + protocols.valid()):
        parse_config({"source": {"protocol": "zmq", "address": "tcp://127.0.0.1:5999"},
                      "extraction": {"ephys": {}}, "decoder": {"model": "m"}})
