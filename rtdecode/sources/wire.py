"""The `rtframe` v1 wire format (DESIGN 3.4): ZeroMQ multipart of three frames.

  1. topic, ASCII: frame, stim, decoded, activity, stats, trigger
  2. header, UTF-8 JSON: v (1), seq (per-publisher counter from 0), t (s, sender's clock),
     dtype (numpy string, little-endian or byte-sized), shape, plus per-topic fields
  3. payload: the raw little-endian C-order array, exactly prod(shape) * itemsize bytes

No pickle, ever. `decode` validates everything and raises WireError with a message naming the
problem; the ingest counts those and keeps going. The MATLAB driver builds the same bytes with
`jsonencode` and `typecast`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from rtdecode.errors import WireError

VERSION = 1
TOPICS = ("frame", "stim", "decoded", "activity", "stats", "trigger")
# Numeric dtypes only: object, string and void dtypes could smuggle structure in the payload.
DTYPES = ("|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8", "|b1")
REQUIRED_FIELDS = {"frame": ("frameNumberAcq", "channel", "plane"), "stim": ("frame", "trial")}
MAX_PAYLOAD = 256 * 1024 * 1024


@dataclass
class Message:
    topic: str
    header: dict
    array: np.ndarray | None = field(default=None)
    received: float = 0.0  # time.perf_counter() when the receiver got it (0 if not stamped)

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def t(self) -> float:
        return self.header["t"]


def encode(topic: str, seq: int, t: float, array: np.ndarray | None = None, **fields) -> list[bytes]:
    """Build the three frames of one message. `array` None sends an empty payload (shape [0])."""
    if topic not in TOPICS:
        raise WireError(f"unknown topic '{topic}'; valid topics: {', '.join(TOPICS)}")
    if array is None:
        array = np.zeros(0, np.uint8)
    arr = np.ascontiguousarray(array)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    if arr.dtype.str not in DTYPES:
        raise WireError(f"dtype {arr.dtype.str} cannot be sent; valid: {', '.join(DTYPES)}")
    header = {"v": VERSION, "seq": int(seq), "t": float(t), "dtype": arr.dtype.str, "shape": list(arr.shape)}
    header.update(fields)
    return [topic.encode("ascii"), json.dumps(header, separators=(",", ":")).encode("utf-8"), arr.tobytes()]


def decode(frames: list[bytes]) -> Message:
    """Validate and decode a multipart message; WireError says what is wrong.

    The returned array is a read-only view on the payload (no copy).
    """
    if len(frames) != 3:
        raise WireError(f"expected 3 frames (topic, header, payload), got {len(frames)}")
    raw_topic, raw_header, payload = (bytes(f) if not isinstance(f, bytes) else f for f in frames)
    try:
        topic = raw_topic.decode("ascii")
    except UnicodeDecodeError:
        raise WireError(f"topic is not ASCII: {raw_topic[:32]!r}") from None
    if topic not in TOPICS:
        raise WireError(f"unknown topic '{topic[:32]}'; valid topics: {', '.join(TOPICS)}")
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"{topic}: header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WireError(f"{topic}: header must be a JSON object, got {type(header).__name__}")
    if header.get("v") != VERSION:
        raise WireError(f"{topic}: version {header.get('v')!r}, this reader speaks v{VERSION}")
    seq = header.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise WireError(f"{topic}: 'seq' must be a non-negative integer, got {seq!r}")
    t = header.get("t")
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t):
        raise WireError(f"{topic}: 't' must be a finite number of seconds, got {t!r}")
    dtype = header.get("dtype")
    if dtype not in DTYPES:
        raise WireError(f"{topic}: dtype {dtype!r} not allowed; valid: {', '.join(DTYPES)}")
    shape = header.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        raise WireError(f"{topic}: 'shape' must be a list of non-negative integers, got {shape!r}")
    for key in REQUIRED_FIELDS.get(topic, ()):
        if key not in header:
            raise WireError(f"{topic}: header lacks '{key}' (required for this topic)")
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if expected > MAX_PAYLOAD:
        raise WireError(f"{topic}: shape {shape} of {dtype} is {expected} bytes, over the {MAX_PAYLOAD}-byte limit")
    if len(payload) != expected:
        raise WireError(f"{topic}: payload is {len(payload)} bytes, shape {shape} of {dtype} needs {expected}")
    array = np.frombuffer(payload, dtype=np.dtype(dtype)).reshape(shape)
    return Message(topic, header, array)


class Sequencer:
    """Per-publisher message counter: seq starts at 0 and grows by 1 per message."""

    def __init__(self):
        self.next = 0

    def __call__(self) -> int:
        n = self.next
        self.next += 1
        return n


class GapCounter:
    """Counts messages missing from a publisher's seq stream (dropped by a full queue or lost)."""

    def __init__(self):
        self.last: int | None = None
        self.missing = 0
        self.restarts = 0

    def see(self, seq: int) -> int:
        """Record `seq`; return how many messages were skipped just before it."""
        gap = 0
        if self.last is not None:
            if seq > self.last + 1:
                gap = seq - self.last - 1
            elif seq <= self.last:  # the publisher restarted its counter
                self.restarts += 1
        self.last = seq
        self.missing += gap
        return gap
