"""Wire format of the Open Ephys ZMQ Interface plugin (current protocol, REFERENCES C).

The plugin publishes on a PUB socket (`data_port`, default 5556) multipart messages:

  1. envelope `DATA\\0` (continuous) or `EVENT\\0` (TTL events and spikes), NUL included
  2. JSON header with `message_num` (+1 per message, any kind) and `type` (`data`, `event`, `spike`)
  3. payload: float32 samples of ONE channel (data), 10 bytes line/state/word (TTL), or the float32
     waveform num_channels x num_samples (spike)

and answers heartbeats on a REP socket at data_port+1 with a plain string (`heartbeat received`).

`parse_message` decodes one message, every field type- and range-checked (OpenEphysProtocolError
with a fixed `reason` otherwise). The encoders `encode_data`, `encode_ttl`, `encode_spike` build the
plugin's exact bytes; the emulator and the tests use them. The client (heartbeats, reassembly of the
per-channel messages into `ContinuousChunk`s, loss and restart counting) is `zmq_interface`.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass

import numpy as np

from rtdecode.sources import safejson
from rtdecode.sources.openephys import OpenEphysProtocolError


DATA_ENVELOPE = b"DATA\x00"
EVENT_ENVELOPE = b"EVENT\x00"
TTL_TYPE = 3  # content.type of a TTL event
TTL_PAYLOAD = struct.Struct("<BBQ")  # line (0-based), state, TTL word: 10 bytes
HEARTBEAT_REPLY = "heartbeat received"


# ---------------------------------------------------------------- what the client hands out

@dataclass
class ContinuousChunk:
    stream: str
    sample_num: int  # first sample of the block (absolute, counted from the start of acquisition)
    sample_rate: float
    channel_nums: list[int]  # row i of `data` is channel channel_nums[i]
    channel_names: list[str]
    data: np.ndarray  # float32, channels x samples (µV as the plugin sends them)
    timestamp_ms: float = 0.0
    complete: bool = True  # False if fewer channels arrived than the stream usually has

    @property
    def num_samples(self) -> int:
        return self.data.shape[1]


@dataclass
class TtlEvent:
    stream: str
    source_node: int
    sample_num: int
    line: int  # 0-based
    state: int  # 1 on, 0 off
    word: int
    timestamp_ms: float = 0.0


@dataclass
class SpikeEvent:
    stream: str
    source_node: int
    electrode: str
    sample_num: int
    sorted_id: int
    threshold: list
    waveform: np.ndarray  # float32, num_channels x num_samples
    timestamp_ms: float = 0.0


# ---------------------------------------------------------------- encoders (the plugin's bytes)

def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


def encode_data(message_num: int, stream: str, channel_num: int, channel_name: str, sample_num: int,
                sample_rate: float, samples: np.ndarray, timestamp_ms: float) -> list[bytes]:
    payload = np.ascontiguousarray(samples, dtype="<f4")
    header = {"message_num": int(message_num), "type": "data",
              "content": {"stream": stream, "channel_num": int(channel_num), "channel_name": channel_name,
                          "num_samples": int(payload.size), "sample_num": int(sample_num),
                          "sample_rate": float(sample_rate)},
              "data_size": int(payload.size * 4), "timestamp": timestamp_ms}
    return [DATA_ENVELOPE, _dumps(header), payload.tobytes()]


def encode_ttl(message_num: int, stream: str, source_node: int, sample_num: int, line: int, state: int,
               word: int, timestamp_ms: float) -> list[bytes]:
    header = {"message_num": int(message_num), "type": "event",
              "content": {"stream": stream, "source_node": int(source_node), "type": TTL_TYPE,
                          "sample_num": int(sample_num)},
              "data_size": TTL_PAYLOAD.size, "timestamp": timestamp_ms}
    return [EVENT_ENVELOPE, _dumps(header), TTL_PAYLOAD.pack(int(line), int(state), int(word))]


def encode_spike(message_num: int, stream: str, source_node: int, electrode: str, sample_num: int,
                 sorted_id: int, threshold: list, waveform: np.ndarray, timestamp_ms: float) -> list[bytes]:
    wf = np.ascontiguousarray(waveform, dtype="<f4")
    header = {"message_num": int(message_num), "type": "spike",
              "spike": {"stream": stream, "source_node": int(source_node), "electrode": electrode,
                        "sample_num": int(sample_num), "num_channels": int(wf.shape[0]),
                        "num_samples": int(wf.shape[1]), "sorted_id": int(sorted_id),
                        "threshold": [float(x) for x in threshold]},
              "timestamp": timestamp_ms}
    return [EVENT_ENVELOPE, _dumps(header), wf.tobytes()]


# ---------------------------------------------------------------- decoder

MAX_HEADER = 64 * 1024  # bytes of header JSON
MAX_DEPTH = 8
MAX_SAMPLES = 2**18  # samples of one channel in one block (the GUI's blocks are a few thousand)
MAX_CHANNEL_NUM = 65535
MAX_SPIKE_CHANNELS = 1024
MAX_SPIKE_SAMPLES = 4096
MAX_NAME = 256  # characters of a stream, channel or electrode name
SAMPLE_RANGE = (-(2**62), 2**62)
MAX_MESSAGE_BYTES = 4 * MAX_SAMPLES + MAX_HEADER  # the largest valid message: ZMQ_MAXMSGSIZE of the data socket


def _int(d: dict, key: str, where: str, lo: int = 0, hi: int = 2**53, **kw) -> int:
    return safejson.integer(d, key, where, lo, hi, error=OpenEphysProtocolError, **kw)


def _num(d: dict, key: str, where: str, lo: float = -math.inf, hi: float = math.inf, **kw) -> float:
    return safejson.number(d, key, where, lo, hi, error=OpenEphysProtocolError, **kw)


def _str(d: dict, key: str, where: str, **kw) -> str:
    return safejson.string(d, key, where, MAX_NAME, error=OpenEphysProtocolError, **kw)


def _err(text: str, reason: str) -> OpenEphysProtocolError:
    return OpenEphysProtocolError(text, reason=reason)


def parse_message(frames: list[bytes]):
    """Decode one ZMQ Interface message -> (message_num, kind, item).

    kind is 'data' (item: dict with stream, channel_num, channel_name, sample_num, sample_rate,
    samples float32, timestamp_ms), 'ttl' (TtlEvent), 'event' (a non-TTL event: header dict) or
    'spike' (SpikeEvent). Every field is type- and range-checked; the header is parsed only when it
    is at most MAX_HEADER bytes and MAX_DEPTH deep. Raises OpenEphysProtocolError (with a fixed
    `reason`) saying what is wrong.
    """
    if not isinstance(frames, (list, tuple)) or len(frames) not in (2, 3):
        raise _err(f"expected 2 or 3 frames (envelope, header, payload), got "
                   f"{len(frames) if isinstance(frames, (list, tuple)) else '?'}", "framing")
    env = bytes(frames[0])
    if env not in (DATA_ENVELOPE, EVENT_ENVELOPE):
        raise _err(f"unknown envelope {env[:16]!r}; expected b'DATA\\x00' or b'EVENT\\x00'", "topic")
    header = safejson.loads(bytes(frames[1]), MAX_HEADER, MAX_DEPTH, "header", error=OpenEphysProtocolError)
    if not isinstance(header, dict):
        raise _err(f"header must be a JSON object, got {type(header).__name__}", "not_json")
    if "message_no" in header and "message_num" not in header:
        raise _err("pre-0.5 ZMQ Interface protocol ('message_no'); update the plugin", "version")
    num = _int(header, "message_num", "header")
    kind = header.get("type")
    payload = bytes(frames[2]) if len(frames) == 3 else b""
    ts = header.get("timestamp", 0)
    ok = isinstance(ts, (int, float)) and not isinstance(ts, bool) and abs(ts) < 1e300 and math.isfinite(float(ts))
    ts = float(ts) if ok else 0.0
    if kind == "data":
        if env != DATA_ENVELOPE:
            raise _err("data message under an EVENT envelope", "topic")
        c = header.get("content")
        if not isinstance(c, dict):
            raise _err("data: header lacks the 'content' object", "field")
        n = _int(c, "num_samples", "data", 0, MAX_SAMPLES)
        if len(payload) != n * 4:
            raise _err(f"data: payload is {len(payload)} bytes, {n} float32 samples need {n * 4}", "payload")
        ds = header.get("data_size")
        if ds is not None and (not isinstance(ds, int) or isinstance(ds, bool) or ds != n * 4):
            raise _err(f"data: data_size {safejson._short(ds)} disagrees with num_samples {n}", "field")
        item = {"stream": _str(c, "stream", "data"),
                "channel_num": _int(c, "channel_num", "data", 0, MAX_CHANNEL_NUM),
                "channel_name": _str(c, "channel_name", "data", default="", required=False),
                "sample_num": _int(c, "sample_num", "data", *SAMPLE_RANGE),
                "sample_rate": _num(c, "sample_rate", "data", 1e-3, 1e8),
                "samples": np.frombuffer(payload, dtype="<f4"), "timestamp_ms": ts}
        return num, "data", item
    if env != EVENT_ENVELOPE:
        raise _err(f"{safejson._short(kind)} message under a DATA envelope", "topic")
    if kind == "event":
        c = header.get("content")
        if not isinstance(c, dict):
            raise _err("event: header lacks the 'content' object", "field")
        etype = c.get("type")
        if etype != TTL_TYPE or isinstance(etype, bool):
            return num, "event", header  # other event types (text, ...) pass through undecoded
        if len(payload) != TTL_PAYLOAD.size:
            raise _err(f"ttl: payload is {len(payload)} bytes, expected {TTL_PAYLOAD.size}", "payload")
        line, state, word = TTL_PAYLOAD.unpack(payload)
        return num, "ttl", TtlEvent(_str(c, "stream", "ttl", default="", required=False),
                                    _int(c, "source_node", "ttl", -1, 2**31, default=-1, required=False),
                                    _int(c, "sample_num", "ttl", *SAMPLE_RANGE), line, state, word, ts)
    if kind == "spike":
        s = header.get("spike")
        if not isinstance(s, dict):
            raise _err("spike: header lacks the 'spike' object (fields are under 'spike')", "field")
        nch = _int(s, "num_channels", "spike", 0, MAX_SPIKE_CHANNELS)
        ns = _int(s, "num_samples", "spike", 0, MAX_SPIKE_SAMPLES)
        if len(payload) != nch * ns * 4:
            raise _err(f"spike: payload is {len(payload)} bytes, {nch} x {ns} float32 need {nch * ns * 4}", "payload")
        thr = s.get("threshold", [])
        if not isinstance(thr, list) or len(thr) > MAX_SPIKE_CHANNELS or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and abs(x) < 1e300 and math.isfinite(x)
                for x in thr):
            raise _err(f"spike: 'threshold' must be a list of at most {MAX_SPIKE_CHANNELS} finite numbers", "field")
        return num, "spike", SpikeEvent(_str(s, "stream", "spike", default="", required=False),
                                        _int(s, "source_node", "spike", -1, 2**31, default=-1, required=False),
                                        _str(s, "electrode", "spike", default="", required=False),
                                        _int(s, "sample_num", "spike", *SAMPLE_RANGE),
                                        _int(s, "sorted_id", "spike", -(2**31), 2**31, default=0, required=False),
                                        [float(x) for x in thr],
                                        np.frombuffer(payload, dtype="<f4").reshape(nch, ns), ts)
    raise _err(f"unknown message type {safejson._short(kind)}", "topic")


def example():
    """Protocol openephys by example (rtdecode.sources.protocols.Example): two channels at 1 kHz in two
    blocks of 25 samples (a block is complete when the next one starts), one crossing on channel 0 in
    the first 10 ms bin."""
    from rtdecode.sources.protocols import Example

    first = np.zeros(25, np.float32)
    first[3] = -5.0
    messages, num = [], 0
    for start in (0, 25):
        for ch in range(2):
            data = first if ch == 0 and start == 0 else np.zeros(25, np.float32)
            messages.append(encode_data(num, "example", ch, f"CH{ch + 1}", start, 1000.0, data, start + 25.0))
            num += 1
    return Example(source={}, extraction={"ephys": {"band_hz": None, "reference": None, "threshold_uv": 0.5,
                                                    "bin_ms": 10.0, "block_samples": 16}},
                   messages=messages, frame=np.array([1.0, 0.0], np.float32))
