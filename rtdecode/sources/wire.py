"""The `rtframe` v1 wire format (docs/design.md 3.4): ZeroMQ multipart of three frames.

  1. topic, ASCII: frame, stim, decoded, uncertainty, refined, activity, stats, trigger
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
from rtdecode.sources import safejson

VERSION = 1
TOPICS = ("frame", "stim", "decoded", "uncertainty", "refined", "activity", "stats", "trigger")
# Numeric dtypes only: object, string and void dtypes could smuggle structure in the payload.
DTYPES = ("|u1", "|i1", "<u2", "<i2", "<u4", "<i4", "<u8", "<i8", "<f2", "<f4", "<f8", "|b1")
# Required per-topic fields, all integers (checked in range; a trial may be -1: none)
REQUIRED_FIELDS = {"frame": ("frameNumberAcq", "channel", "plane"), "stim": ("frame", "trial")}
MAX_PAYLOAD = 256 * 1024 * 1024
MAX_HEADER = 64 * 1024  # bytes of header JSON
MAX_DEPTH = 8  # JSON nesting of a header
MAX_NDIM = 8
MAX_DIM = 2**31
MAX_COUNTER = 2**53  # seq, frameNumberAcq, frame, ...: integers a double holds exactly
MAX_GAP = 1_000_000  # a counter jump beyond this is not a gap but a restart (no absurd 'dropped')


@dataclass
class Message:
    topic: str
    header: dict
    array: np.ndarray | None = field(default=None)
    received: float = 0.0  # time.perf_counter() when the receiver got it (0 if not stamped)
    source: int = 0  # which publisher of the ingest sent it (0: the acquisition source)
    acquired: float = 0.0  # its acquisition time on time.perf_counter()'s clock (0 if unknown)
    # how much earlier it may have been acquired: the clock estimate's allowed creep since its floor was
    # last seen (rtdecode.sources.clock.ClockOffset.creep), s; freshness checks add it to the age
    age_margin: float = 0.0
    skipped: int = 0  # frames not handed out just before this one (freshness 'latest')
    local_t: float = 0.0  # its `t` on this PC's wall clock (time.time()): t + its publisher's offset (0 if not mapped)
    clock_rejected: bool = False  # its `t` is off its publisher's clock (rtdecode.sources.clock): times are arrival's
    congested: bool = False  # the ingest was at its high-water mark or dropping when it came (no trigger fires on it)
    after_other: bool = False  # the message before it was a second publisher's on the same address (GapCounter)

    @property
    def seq(self) -> int:
        return self.header["seq"]

    @property
    def t(self) -> float:
        return self.header["t"]


def encode(topic: str, seq: int, t: float, array: np.ndarray | None = None, copy: bool = True,
           **fields) -> list[bytes]:
    """Build the three frames of one message. `array` None sends an empty payload (shape [0]).

    copy=False: the payload is a memoryview on the array's own memory (no copy of a 0.5 MB frame);
    send it with `send_multipart(..., copy=False)` and do not change the array until ZeroMQ has
    sent it (the virtual rig's prerendered frames), or it may go out changed."""
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
    payload = arr.tobytes() if copy else memoryview(arr.reshape(-1)).cast("B")
    return [topic.encode("ascii"), json.dumps(header, separators=(",", ":")).encode("utf-8"), payload]


def decode(frames: list[bytes], max_payload: int = MAX_PAYLOAD) -> Message:
    """Validate and decode a multipart message; WireError (with a fixed `reason`) says what is wrong.

    Every field is type- and range-checked before use: the header is at most MAX_HEADER bytes and
    MAX_DEPTH deep (checked before parsing), `seq` and the frame counters are integers below 2**53,
    `t` is finite, `shape` has at most MAX_NDIM dimensions of at most MAX_DIM each. The returned
    array is a read-only view on the payload (no copy).
    """
    if not isinstance(frames, (list, tuple)) or len(frames) != 3:
        n = len(frames) if isinstance(frames, (list, tuple)) else "?"
        raise WireError(f"expected 3 frames (topic, header, payload), got {n}", reason="framing")
    raw_topic, raw_header = (f if isinstance(f, bytes) else bytes(f) for f in frames[:2])
    # The payload may be a memoryview (a zmq.Frame's buffer, received with copy=False): the array
    # is then a view on ZeroMQ's own buffer, no copy of the (~0.5 MB) frame.
    payload = frames[2]
    if isinstance(payload, memoryview):
        payload = payload.cast("B") if payload.format != "B" or payload.ndim != 1 else payload
    elif not isinstance(payload, bytes):
        payload = bytes(payload)
    if len(raw_topic) > 16:
        raise WireError(f"topic is {len(raw_topic)} bytes; valid topics: {', '.join(TOPICS)}", reason="topic")
    try:
        topic = raw_topic.decode("ascii")
    except UnicodeDecodeError:
        raise WireError(f"topic is not ASCII: {raw_topic[:16]!r}", reason="not_utf8") from None
    if topic not in TOPICS:
        raise WireError(f"unknown topic {topic[:16]!r}; valid topics: {', '.join(TOPICS)}", reason="topic")
    header = safejson.loads(raw_header, MAX_HEADER, MAX_DEPTH, f"{topic}: header")
    if not isinstance(header, dict):
        raise WireError(f"{topic}: header must be a JSON object, got {type(header).__name__}", reason="not_json")
    if header.get("v") != VERSION or isinstance(header.get("v"), bool):
        raise WireError(f"{topic}: version {safejson._short(header.get('v'))}, this reader speaks v{VERSION}",
                        reason="version")
    safejson.integer(header, "seq", topic, 0, MAX_COUNTER)
    safejson.number(header, "t", topic)
    dtype = header.get("dtype")
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(f"{topic}: dtype {safejson._short(dtype)} not allowed; valid: {', '.join(DTYPES)}",
                        reason="dtype")
    shape = header.get("shape")
    if not isinstance(shape, list) or len(shape) > MAX_NDIM or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_DIM for s in shape):
        raise WireError(f"{topic}: 'shape' must be a list of at most {MAX_NDIM} integers in 0..{MAX_DIM}, got "
                        f"{safejson._short(shape)}", reason="shape")
    for key in REQUIRED_FIELDS.get(topic, ()):
        if key not in header:
            raise WireError(f"{topic}: header lacks '{key}' (required for this topic)", reason="field")
        safejson.integer(header, key, topic, -1 if key == "trial" else 0, MAX_COUNTER)
    if topic == "stats" and "end" in header and not isinstance(header["end"], bool):
        raise WireError(f"stats: 'end' must be true or false, got {safejson._short(header['end'])}", reason="field")
    expected = math.prod(shape) * np.dtype(dtype).itemsize
    if expected > max_payload:
        raise WireError(f"{topic}: shape {shape} of {dtype} is {expected} bytes, over the {max_payload}-byte limit",
                        reason="too_large")
    if len(payload) != expected:
        raise WireError(f"{topic}: payload is {len(payload)} bytes, shape {shape} of {dtype} needs {expected}",
                        reason="payload")
    array = np.frombuffer(payload, dtype=np.dtype(dtype)).reshape(shape)
    array.flags.writeable = False  # a zmq buffer is writable; the message's array never is
    return Message(topic, header, array)


class Sequencer:
    """Per-publisher message counter: seq starts at 0 and grows by 1 per message."""

    def __init__(self):
        self.next = 0

    def __call__(self) -> int:
        n = self.next
        self.next += 1
        return n


OTHER = -1  # GapCounter.see: the message continues a second counter on the same address
OTHER_TTL = 100  # messages after which a second counter not continued is forgotten


class GapCounter:
    """Counts messages missing from a publisher's seq stream (dropped by a full queue or lost), and
    tells a second publisher on the same address (two rigs behind one forwarder, a sender left
    running) from a restart.

    A counter that jumps (back, or forward past a gap) is a restart or a gap of this publisher, unless
    the next messages continue the counter it jumped away from: then two counters are interleaved.
    The one seen first is followed; messages that continue the other get OTHER (the caller rejects
    them), and the jump that let the first of them in is undone here (its gap or restart uncounted,
    `swaps` + 1, `swapped` True on the message that showed it). The second counter is forgotten after
    OTHER_TTL messages without it."""

    def __init__(self, max_gap: int = MAX_GAP):
        self.last: int | None = None
        self.missing = 0
        self.restarts = 0
        self.max_gap = max_gap
        self.other: int | None = None  # the last seq of a second counter on the same address
        self.other_age = 0  # messages since it was last continued
        self.others = 0  # messages that continued the second counter
        self.swaps = 0  # times a jump turned out to be the first message of a second counter
        self.swapped = False  # the last message showed that the one before it was the other counter's
        self._jump: tuple[int, int] | None = None  # (gap, restart) counted for the last message, if it jumped

    def see(self, seq: int) -> int:
        """Record `seq`; return how many messages were skipped just before it, or OTHER if it
        continues a second counter. A jump forward of more than `max_gap` is not believed (a hostile
        or broken counter): it counts as a restart."""
        self.swapped = False
        jump, self._jump = self._jump, None
        if self.last is None:
            self.last = seq
            return 0
        if seq == self.last + 1:
            self.last = seq
            self._age_other()
            return 0
        if self.other is not None and seq == self.other + 1:
            if jump is not None:  # the message before jumped away from this counter: it was the other one
                self.missing -= jump[0]
                self.restarts -= jump[1]
                self.other, self.last = self.last, seq
                self.other_age = 0
                self.swaps += 1
                self.swapped = True
                return 0
            self.other = seq
            self.other_age = 0
            self.others += 1
            return OTHER
        gap = restart = 0
        if self.last + 1 < seq <= self.last + 1 + self.max_gap:
            gap = seq - self.last - 1
        else:  # back, or absurdly far: the publisher restarted its counter (or a second one appeared)
            restart = 1
        self.other, self.other_age = self.last, 0
        self._jump = (gap, restart)
        self.last = seq
        self.missing += gap
        self.restarts += restart
        return gap

    def _age_other(self) -> None:
        if self.other is not None:
            self.other_age += 1
            if self.other_age > OTHER_TTL:
                self.other = None


def example():
    """Protocol rtframe by example (rtdecode.sources.protocols.Example): one uint16 frame."""
    from rtdecode.sources.protocols import Example

    image = (np.arange(48, dtype=np.uint16) * 7).reshape(8, 6)
    return Example(source={}, extraction={"two_photon": {"rois": "rois"}},
                   messages=[encode("frame", 0, 0.0, image, frameNumberAcq=1, channel=1, plane=1)], frame=image)
