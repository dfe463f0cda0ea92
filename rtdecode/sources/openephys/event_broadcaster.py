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

from rtdecode.sources.openephys import OpenEphysProtocolError

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


def _get(obj: dict, key: str, kinds, what: str):
    v = obj.get(key)
    if not isinstance(v, kinds) or isinstance(v, bool) and bool not in kinds:
        raise OpenEphysProtocolError(f"{what}: '{key}' missing or of the wrong type ({v!r})")
    if isinstance(v, float) and not math.isfinite(v):
        raise OpenEphysProtocolError(f"{what}: '{key}' is not finite")
    return v


def parse_broadcast(frames: list[bytes]) -> BroadcastTtl | BroadcastSpike:
    if len(frames) != 2:
        raise OpenEphysProtocolError(f"expected 2 frames (uint16 type, JSON), got {len(frames)}")
    raw_type, raw_json = bytes(frames[0]), bytes(frames[1])
    if len(raw_type) != 2:
        raise OpenEphysProtocolError(f"type frame is {len(raw_type)} bytes, expected a uint16 (2 bytes)")
    etype = int.from_bytes(raw_type, "little")
    try:
        obj = json.loads(raw_json.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OpenEphysProtocolError(f"JSON frame unreadable ({exc}); is the plugin set to JSON output?") from None
    if not isinstance(obj, dict):
        raise OpenEphysProtocolError("JSON frame is not an object")
    if etype == TYPE_TTL:
        if obj.get("event_type") != "ttl":
            raise OpenEphysProtocolError(f"type 0 (TTL) but event_type {obj.get('event_type')!r}")
        return BroadcastTtl(str(obj.get("stream", "")), int(_get(obj, "source_node", (int,), "ttl")),
                            float(_get(obj, "sample_rate", (int, float), "ttl")), str(obj.get("channel_name", "")),
                            int(_get(obj, "sample_number", (int,), "ttl")), int(_get(obj, "line", (int,), "ttl")),
                            bool(_get(obj, "state", (bool, int), "ttl")))
    if etype == TYPE_SPIKE:
        if obj.get("event_type") != "spike":
            raise OpenEphysProtocolError(f"type 1 (spike) but event_type {obj.get('event_type')!r}")
        n = int(_get(obj, "num_channels", (int,), "spike"))
        amps = [float(_get(obj, f"amp{k + 1}", (int, float), "spike")) for k in range(n)]
        return BroadcastSpike(str(obj.get("stream", "")), int(_get(obj, "source_node", (int,), "spike")),
                              str(obj.get("electrode", "")), n, float(_get(obj, "sample_rate", (int, float), "spike")),
                              int(_get(obj, "sample_number", (int,), "spike")),
                              int(_get(obj, "sorted_id", (int,), "spike")), amps)
    raise OpenEphysProtocolError(f"unknown event type {etype} (0 TTL, 1 spike)")


class EventBroadcasterClient:
    """SUB on the Event Broadcaster; `receive(timeout_ms)` -> BroadcastTtl / BroadcastSpike / None."""

    def __init__(self, host: str = "127.0.0.1", port: int = 5557, context: zmq.Context | None = None,
                 hwm: int = 100000):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.sock.connect(f"tcp://{host}:{port}")
        self.received: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}

    def receive(self, timeout_ms: int = 100):
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            left = max(0, int((deadline - time.monotonic()) * 1000))
            if not self.sock.poll(left):
                return None
            frames = self.sock.recv_multipart()
            try:
                ev = parse_broadcast(frames)
            except OpenEphysProtocolError as exc:
                key = str(exc)[:60]
                self.rejected[key] += 1
                now = time.monotonic()
                if now - self._last_log.get(key, -10.0) > 1.0:
                    self._last_log[key] = now
                    log.warning("Event Broadcaster: rejected message (%d so far of this kind): %s",
                                self.rejected[key], exc)
                continue
            self.received["ttl" if isinstance(ev, BroadcastTtl) else "spike"] += 1
            return ev

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def close(self) -> None:
        self.sock.close(linger=0)
