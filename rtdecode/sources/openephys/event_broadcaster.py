"""Client of the Open Ephys Event Broadcaster plugin in its JSON output format (REFERENCES C).

The plugin publishes (PUB, default `tcp://*:5557`) two frames per event: a uint16 (0 TTL, 1 spike,
little-endian as on every machine the GUI runs on), then a JSON object:

  TTL   {"event_type": "ttl", "stream", "source_node", "sample_rate", "channel_name",
         "sample_number", "line" (0-based), "state" (true/false)}
  spike {"event_type": "spike", "stream", "source_node", "electrode", "num_channels", "sample_rate",
         "sample_number", "sorted_id", "amp1".."ampN"}  (ampK = -waveform[K-1][pre_peak + 1], µV)

The RAW_BINARY format is not read here (its layout follows GUI internals); select JSON in the plugin.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field

import zmq

from rtdecode.sources import safejson
from rtdecode.sources.openephys import OpenEphysProtocolError
from rtdecode.sources.redial import Redial
from rtdecode.sources.rejects import Rejects

log = logging.getLogger(__name__)

TYPE_TTL = 0
TYPE_SPIKE = 1


@dataclass
class BroadcastTtl:
    stream: str
    source_node: int
    sample_rate: float
    channel_name: str
    sample_number: int
    line: int  # 0-based
    state: bool


@dataclass
class BroadcastSpike:
    stream: str
    source_node: int
    electrode: str
    num_channels: int
    sample_rate: float
    sample_number: int
    sorted_id: int
    amplitudes: list = field(default_factory=list)  # amp1..ampN


def encode_ttl(stream: str, source_node: int, sample_rate: float, channel_name: str, sample_number: int,
               line: int, state: bool) -> list[bytes]:
    obj = {"event_type": "ttl", "stream": stream, "source_node": int(source_node),
           "sample_rate": float(sample_rate), "channel_name": channel_name,
           "sample_number": int(sample_number), "line": int(line), "state": bool(state)}
    return [TYPE_TTL.to_bytes(2, "little"), json.dumps(obj).encode("utf-8")]


def encode_spike(stream: str, source_node: int, electrode: str, sample_rate: float, sample_number: int,
                 sorted_id: int, amplitudes: list) -> list[bytes]:
    obj = {"event_type": "spike", "stream": stream, "source_node": int(source_node), "electrode": electrode,
           "num_channels": len(amplitudes), "sample_rate": float(sample_rate),
           "sample_number": int(sample_number), "sorted_id": int(sorted_id)}
    for k, a in enumerate(amplitudes):
        obj[f"amp{k + 1}"] = float(a)
    return [TYPE_SPIKE.to_bytes(2, "little"), json.dumps(obj).encode("utf-8")]


MAX_JSON = 64 * 1024
MAX_DEPTH = 4  # the plugin sends one flat object
MAX_CHANNELS = 1024  # amp1..ampN of a spike
MAX_NAME = 256
MAX_MESSAGE_BYTES = MAX_JSON + 64  # ZMQ_MAXMSGSIZE of the socket
SAMPLE_RANGE = (-(2**62), 2**62)


def _err(text: str, reason: str = "field") -> OpenEphysProtocolError:
    return OpenEphysProtocolError(text, reason=reason)


def _int(obj, key, what, lo=-(2**31), hi=2**31):
    return safejson.integer(obj, key, what, lo, hi, error=OpenEphysProtocolError)


def _num(obj, key, what, lo=-math.inf, hi=math.inf):
    return safejson.number(obj, key, what, lo, hi, error=OpenEphysProtocolError)


def _str(obj, key, what):
    return safejson.string(obj, key, what, MAX_NAME, error=OpenEphysProtocolError, default="", required=False)


def parse_broadcast(frames: list[bytes]) -> BroadcastTtl | BroadcastSpike:
    """Decode one Event Broadcaster message; every field type- and range-checked. Raises
    OpenEphysProtocolError (with a fixed `reason`) saying what is wrong."""
    if not isinstance(frames, (list, tuple)) or len(frames) != 2:
        raise _err(f"expected 2 frames (uint16 type, JSON), got "
                   f"{len(frames) if isinstance(frames, (list, tuple)) else '?'}", "framing")
    raw_type, raw_json = bytes(frames[0]), bytes(frames[1])
    if len(raw_type) != 2:
        raise _err(f"type frame is {len(raw_type)} bytes, expected a uint16 (2 bytes)", "framing")
    etype = int.from_bytes(raw_type, "little")
    if etype not in (TYPE_TTL, TYPE_SPIKE):
        raise _err(f"unknown event type {etype} (0 TTL, 1 spike)", "topic")
    obj = safejson.loads(raw_json, MAX_JSON, MAX_DEPTH, "JSON frame (is the plugin set to JSON output?)",
                         error=OpenEphysProtocolError)
    if not isinstance(obj, dict):
        raise _err("JSON frame is not an object", "not_json")
    if etype == TYPE_TTL:
        if obj.get("event_type") != "ttl":
            raise _err(f"type 0 (TTL) but event_type {safejson._short(obj.get('event_type'))}")
        state = obj.get("state")
        if not isinstance(state, (bool, int)) or state not in (0, 1):
            raise _err(f"ttl: 'state' must be true or false, got {safejson._short(state)}")
        return BroadcastTtl(_str(obj, "stream", "ttl"), _int(obj, "source_node", "ttl"),
                            _num(obj, "sample_rate", "ttl", 1e-3, 1e8), _str(obj, "channel_name", "ttl"),
                            _int(obj, "sample_number", "ttl", *SAMPLE_RANGE), _int(obj, "line", "ttl", 0, 65535),
                            bool(state))
    if obj.get("event_type") != "spike":
        raise _err(f"type 1 (spike) but event_type {safejson._short(obj.get('event_type'))}")
    n = _int(obj, "num_channels", "spike", 0, MAX_CHANNELS)
    amps = [_num(obj, f"amp{k + 1}", "spike") for k in range(n)]
    return BroadcastSpike(_str(obj, "stream", "spike"), _int(obj, "source_node", "spike"),
                          _str(obj, "electrode", "spike"), n, _num(obj, "sample_rate", "spike", 1e-3, 1e8),
                          _int(obj, "sample_number", "spike", *SAMPLE_RANGE), _int(obj, "sorted_id", "spike"), amps)


class EventBroadcasterClient:
    """SUB on the Event Broadcaster; `receive(timeout_ms)` -> BroadcastTtl / BroadcastSpike / None."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5557, context: zmq.Context | None = None,
                 hwm: int = 10000, max_msg_bytes: int = MAX_MESSAGE_BYTES):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.MAXMSGSIZE, int(max_msg_bytes))
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(f"tcp://{host}:{port}")
        self.redial = Redial(self.sock, f"tcp://{host}:{port}", "Event Broadcaster")
        self.received: Counter[str] = Counter()
        self.rejects = Rejects("Event Broadcaster", logger=log)
        self.rejected = self.rejects.counts

    def receive(self, timeout_ms: int = 100):
        deadline = time.monotonic() + timeout_ms / 1000
        self.redial.check()
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.sock.poll(left):
                return None
            frames = self.sock.recv_multipart()
            try:
                ev = parse_broadcast(frames)
            except OpenEphysProtocolError as exc:
                self.rejects.error(exc)
                continue
            self.received["ttl" if isinstance(ev, BroadcastTtl) else "spike"] += 1
            return ev

    @property
    def n_rejected(self) -> int:
        return self.rejects.total

    def close(self) -> None:
        self.redial.close()
        self.sock.close(linger=0)


def example():
    """Protocol eventbroadcaster by example (rtdecode.sources.protocols.Example): sorted spikes of units
    a and b at 1 kHz; the first 10 ms bin holds two spikes of a (it closes when a later spike arrives)."""
    import numpy as np

    from rtdecode.sources.protocols import Example

    spikes = ((3, "a"), (5, "a"), (15, "b"), (25, "b"))
    return Example(source={"units": ["a", "b"]}, extraction={"ephys": {"bin_ms": 10.0}},
                   messages=[encode_spike("example", 100, unit, 1000.0, s, 0, [1.0]) for s, unit in spikes],
                   frame=np.array([2.0, 0.0], np.float32))
