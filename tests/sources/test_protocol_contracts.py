"""The contract of every registered source protocol (rtdecode.sources.protocols), over real loopback
ZeroMQ sockets: its entry builds an ingest that satisfies SourceIngest and hands out the frame its
`example` says for the example's messages, and its probe listener reports those messages."""

import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.live.config import parse_config
from rtdecode.sources import protocols
from rtdecode.sources.interface import REQUIRED_COUNTS, SourceIngest
from rtdecode.sources.probe import probe


class Sender:
    """A bound XPUB (it sees its subscriber arrive) publishing a protocol's example messages."""

    def __init__(self, ctx, example: protocols.Example):
        self.example = example
        self.sock = ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind("tcp://127.0.0.1:*")
        self.address = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def wait_subscribed(self, timeout_s=5.0):
        assert self.sock.poll(int(timeout_s * 1000)), "no subscriber arrived"
        self.sock.recv()
        time.sleep(0.1)  # every subscription of the subscriber (one per topic) in place

    def send(self) -> None:
        for parts in self.example.messages:
            self.sock.send_multipart(parts)


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def _sender(name, ctx) -> Sender:
    return Sender(ctx, protocols.resolve(protocols.get(name).example)())


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_the_entry_is_complete(name):
    p = protocols.get(name)
    assert p.modality in protocols.MODALITIES
    assert callable(protocols.resolve(p.ingest)) and callable(protocols.resolve(p.probe))
    assert isinstance(protocols.resolve(p.example)(), protocols.Example)
    if p.modality == "ephys":  # the ingest runs the extraction and the model's inputs are listed by a key
        assert callable(protocols.resolve(p.stages)) and p.inputs_key in p.source_keys
    else:
        assert p.stages is None


@pytest.mark.parametrize("name", list(protocols.PROTOCOLS))
def test_a_message_round_trips_through_the_ingest(name, ctx):
    sender = _sender(name, ctx)
    ex = sender.example
    cfg = parse_config({"source": {"protocol": name, "address": sender.address, **ex.source},
                        "extraction": ex.extraction, "decoder": {"model": "model"}})
    proto = protocols.get(name)
    frame = np.asarray(ex.frame)
    stages = proto.make_stages(cfg, frame.size)  # ephys: one model input per element of the frame
    ingest = proto.make_ingest(cfg, stages, frame.nbytes)
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
        np.testing.assert_array_equal(msg.array.reshape(frame.shape), frame)  # the frame the example makes
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
