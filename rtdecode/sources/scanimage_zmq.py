"""ScanImage's own ZeroMQ frame stream (ScanImage Premium 2025.0.0 and later), read as rtframe frames.

What the vendor documents (scanimage.org, "Premium Features / ZeroMQ"; the part of the page read here):

- ScanImage publishes frames "as they are received from the data pipeline" over ZeroMQ **pub-sub**
  only. ScanImage is the publisher and **binds** ("listening through its own publishing server");
  rtdecode subscribes and connects. The server starts when any acquisition starts.
- The address is set by the "ZMQ Configuration" device (a port; all interfaces) or
  `hSI.hScan2D.hAcq.ZMQAddress = 'tcp://*:PORT'` (the page's example port: 65179). No default port.
- Frames are emitted for the channels that are **logged**, even when logging itself is off.
- Only the resonant scanning modes of vDAQ systems publish, for now.

What that text leaves open: the message layout (number of parts, topic, header encoding and field
names, pixel type, byte order, line order). **The layout below is an assumption**, written here and
only here; a publisher built from this table (tests/sources/test_scanimage_zmq.py) is what it was tested
against, not ScanImage. `rtdecode probe ADDRESS --protocol scanimage_zmq` on the rig shows what
ScanImage really sends (parts, sizes, header keys, the first rejected message): if it differs, change
`LAYOUT`, `HEADER_KEYS` and `DTYPES` below, nothing else.

Assumed layout (one ZeroMQ multipart message per frame, per channel):

| part | content |
|---|---|
| 0 | header: a UTF-8 JSON object (fields below) |
| 1 | pixels: `height` x `width` values of `dataType` (default int16), little-endian, C order (line after line) |

| rtframe field | header key(s), first found wins | required | notes |
|---|---|---|---|
| frameNumberAcq | `frameNumber`, `frameNumberAcq` | yes | frame counter, from 1 |
| channel | `channel` | yes | 1-based ScanImage channel |
| shape[0] (lines) | `height`, `linesPerFrame` | yes | |
| shape[1] (pixels) | `width`, `pixelsPerLine` | yes | |
| dtype | `dataType`, `dtype` | no (int16) | `int16`, `uint16`, `int32`, `single`, ... or a numpy string |
| frameTimestamp | `frameTimestamp`, `timestamp` | no | s since the acquisition started |
| plane | `zIdx`, `plane` | no (1) | index in the z series |
| roi | `roi`, `roiIdx` | no (1) | index of the ROI (multi-ROI scans) |

Each valid message becomes a `wire.Message` with topic `frame` and an rtframe header: `v` 1, `seq`
counted here (this stream has no sequence number), `t` the time of reception on this PC (ScanImage's
wall clock is not assumed to be in the header), the fields above, and `native` (the header as
received). Lost frames are counted from `frameNumberAcq` gaps per (channel, roi) (in a volume each
plane is a frame of its own, so the number steps by one across planes); a frame number that goes
back is a new acquisition (`restarts`). Malformed messages are counted under
`rejected` with their reason, never raised.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter

import numpy as np
import zmq

from rtdecode.errors import WireError
from rtdecode.sources import wire

log = logging.getLogger(__name__)

# ---------------------------------------------------------------- the assumed layout, in one place
LAYOUT = ("header", "pixels")  # the parts of one message, in order
HEADER_PART = LAYOUT.index("header")
PIXELS_PART = LAYOUT.index("pixels")
HEADER_KEYS = {  # rtframe field: (header keys tried in order, required)
    "frameNumberAcq": (("frameNumber", "frameNumberAcq"), True),
    "channel": (("channel",), True),
    "height": (("height", "linesPerFrame"), True),
    "width": (("width", "pixelsPerLine"), True),
    "dtype": (("dataType", "dtype"), False),
    "frameTimestamp": (("frameTimestamp", "timestamp"), False),
    "plane": (("zIdx", "plane"), False),
    "roi": (("roi", "roiIdx"), False),
}
DEFAULT_DTYPE = "int16"
DTYPES = {  # MATLAB class names and numpy strings -> little-endian numpy dtype string
    "int16": "<i2", "uint16": "<u2", "int8": "|i1", "uint8": "|u1", "int32": "<i4", "uint32": "<u4",
    "single": "<f4", "float32": "<f4", "double": "<f8", "float64": "<f8",
    "<i2": "<i2", "<u2": "<u2", "|i1": "|i1", "|u1": "|u1", "<i4": "<i4", "<u4": "<u4", "<f4": "<f4", "<f8": "<f8",
}


def _field(header: dict, name: str):
    keys, required = HEADER_KEYS[name]
    for k in keys:
        if k in header:
            return header[k]
    if required:
        raise WireError(f"scanimage_zmq: header lacks {' or '.join(repr(k) for k in keys)} "
                        f"(has {', '.join(sorted(header)) or 'no keys'})")
    return None


def _int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or value < minimum:
        raise WireError(f"scanimage_zmq: {name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def decode_native(parts: list[bytes], seq: int, t: float) -> wire.Message:
    """One native message -> an rtframe `frame` Message (WireError says what does not fit LAYOUT)."""
    if len(parts) != len(LAYOUT):
        raise WireError(f"scanimage_zmq: expected {len(LAYOUT)} parts ({', '.join(LAYOUT)}), got {len(parts)} "
                        f"of {[len(p) for p in parts][:8]} bytes")
    raw_header, payload = bytes(parts[HEADER_PART]), parts[PIXELS_PART]
    try:
        header = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"scanimage_zmq: header part is not UTF-8 JSON ({exc}; starts {raw_header[:24]!r})") from None
    if not isinstance(header, dict):
        raise WireError(f"scanimage_zmq: header must be a JSON object, got {type(header).__name__}")
    height = _int("height", _field(header, "height"), 1)
    width = _int("width", _field(header, "width"), 1)
    dtype_name = _field(header, "dtype") or DEFAULT_DTYPE
    dtype = DTYPES.get(str(dtype_name))
    if dtype is None:
        raise WireError(f"scanimage_zmq: pixel type {dtype_name!r} unknown; known: {', '.join(sorted(DTYPES))}")
    expected = height * width * np.dtype(dtype).itemsize
    if expected > wire.MAX_PAYLOAD:
        raise WireError(f"scanimage_zmq: {height} x {width} {dtype_name} is over the {wire.MAX_PAYLOAD}-byte limit")
    if len(payload) != expected:
        raise WireError(f"scanimage_zmq: pixels part is {len(payload)} bytes, {height} x {width} {dtype_name} "
                        f"needs {expected}")
    ts = _field(header, "frameTimestamp")
    if ts is not None and (isinstance(ts, bool) or not isinstance(ts, (int, float)) or not math.isfinite(ts)):
        raise WireError(f"scanimage_zmq: frameTimestamp must be a finite number of seconds, got {ts!r}")
    plane, roi = _field(header, "plane"), _field(header, "roi")
    out = {"v": wire.VERSION, "seq": int(seq), "t": float(t), "dtype": dtype, "shape": [height, width],
           "frameNumberAcq": _int("frameNumber", _field(header, "frameNumberAcq"), 0),
           "channel": _int("channel", _field(header, "channel"), 0),
           "plane": 1 if plane is None else _int("plane", plane, 0),
           "roi": 1 if roi is None else _int("roi", roi, 0),
           "native": header}
    if ts is not None:
        out["frameTimestamp"] = float(ts)
    array = np.frombuffer(payload, dtype=np.dtype(dtype)).reshape(height, width)
    return wire.Message("frame", out, array)


def describe(parts: list[bytes]) -> dict:
    """What a message holds, for a lab checking the layout: part sizes, and the header's keys when a
    part is a JSON object."""
    d = {"parts": len(parts), "sizes": [len(p) for p in parts]}
    for i, p in enumerate(parts):
        if len(p) < 65536:
            try:
                obj = json.loads(bytes(p).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue
            if isinstance(obj, dict):
                d[f"part{i}_json_keys"] = sorted(obj)
    return d


class FrameGaps:
    """Lost frames from frameNumberAcq gaps per (channel, roi); a number that goes back is a new
    acquisition."""

    def __init__(self):
        self.last: dict[tuple, int] = {}
        self.missing = 0
        self.restarts = 0

    def see(self, key: tuple, number: int) -> None:
        prev = self.last.get(key)
        if prev is not None:
            if number > prev + 1:
                self.missing += number - prev - 1
            elif number <= prev:
                self.restarts += 1
                log.info("ScanImage stream %s: frame number went from %d to %d: a new acquisition", key, prev, number)
        self.last[key] = number


def from_config(cfg, stages: list, frame_bytes: int | None) -> ScanImageZmqIngest:
    """Protocol `scanimage_zmq` (rtdecode.sources.protocols): ScanImage's native stream at
    `source.address`, with the stimulus PC's rtframe publisher `source.stim_address` beside it."""
    stim = [cfg.source.stim_address] if cfg.source.stim_address else []
    return ScanImageZmqIngest(cfg.source.address[0], stim_endpoints=stim)


class ScanImageZmqIngest:
    """Subscribes to ScanImage's native stream (and, optionally, rtframe publishers such as the
    stimulus PC, through an Ingest); `receive(timeout_ms)` -> Message or None, like Ingest: a
    rtdecode.sources.interface.SourceIngest."""

    def __init__(self, endpoint: str, stim_endpoints: list[str] | tuple[str, ...] = (), hwm: int = 1000,
                 context: zmq.Context | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.RCVHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")  # pub-sub with no documented topic: everything
        self.sock.connect(endpoint)
        self.endpoint = endpoint
        self.stim = None
        if stim_endpoints:
            from rtdecode.sources.ingest import Ingest

            self.stim = Ingest(list(stim_endpoints), hwm=hwm, context=self.ctx)
        self.seq = 0
        self.gaps = FrameGaps()
        self.received: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.first_rejected: dict | None = None  # what the first rejected message looked like
        self._last_log: dict[str, float] = {}

    def receive(self, timeout_ms: int = 100) -> wire.Message | None:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.stim is not None:
                msg = self.stim.receive(timeout_ms=0)
                if msg is not None:
                    self.received[msg.topic] += 1
                    return msg
            left = max(0.0, deadline - time.monotonic())
            wait = min(left, 0.002) if self.stim is not None else left
            if self.sock.poll(int(wait * 1000)):
                parts = self.sock.recv_multipart(copy=True)
                received = time.perf_counter()
                try:
                    msg = decode_native(parts, self.seq, time.time())
                except WireError as exc:
                    self._reject(str(exc), parts)
                    continue
                msg.received = received
                self.seq += 1
                h = msg.header
                self.gaps.see((h["channel"], h["roi"]), h["frameNumberAcq"])
                self.received["frame"] += 1
                return msg
            if time.monotonic() >= deadline:
                return None

    def _reject(self, reason: str, parts: list[bytes]) -> None:
        key = reason[:80]
        self.rejected[key] += 1
        if self.first_rejected is None:
            self.first_rejected = {"reason": reason, **describe(parts)}
        now = time.monotonic()
        if now - self._last_log.get(key, 0.0) > 1.0:
            self._last_log[key] = now
            log.warning("rejected ScanImage message (%d so far of this kind): %s; it looks like %s",
                        self.rejected[key], reason, describe(parts))

    @property
    def dropped(self) -> int:
        return self.gaps.missing + (self.stim.dropped if self.stim is not None else 0)

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values()) + (self.stim.n_rejected if self.stim is not None else 0)

    def counts(self) -> dict:
        c = {"received": dict(self.received), "rejected": sum(self.rejected.values()),
             "rejected_by_reason": dict(self.rejected), "dropped": self.gaps.missing,
             "restarts": self.gaps.restarts}
        if self.stim is not None:
            s = self.stim.counts()
            c["rejected"] += s["rejected"]
            c["rejected_by_reason"].update({f"stim: {k}": v for k, v in s["rejected_by_reason"].items()})
            c["dropped"] += s["dropped"]
            c["restarts"] += s["restarts"]
            c["clock"] = s["clock"]  # the stimulus publishers' offsets (frames are stamped on arrival here)
        return c

    def close(self) -> None:
        self.sock.close()
        if self.stim is not None:
            self.stim.close()


def encode_native(image: np.ndarray, frame_number: int, channel: int, frame_timestamp: float | None = None,
                  plane: int | None = None, roi: int | None = None) -> list[bytes]:
    """A message in the assumed layout (for the test publisher and for rehearsals without ScanImage)."""
    a = np.ascontiguousarray(image)
    names: dict[str, str] = {}
    for k, v in DTYPES.items():  # numpy string -> the first (MATLAB) class name
        if k[0] not in "<|":
            names.setdefault(v, k)
    dstr = np.dtype(a.dtype).newbyteorder("<").str if a.dtype.itemsize > 1 else a.dtype.str
    if dstr not in names or a.ndim != 2:
        raise WireError(f"scanimage_zmq: cannot send a {a.ndim}-D {a.dtype} image (2-D of {', '.join(names)})")
    header = {HEADER_KEYS["frameNumberAcq"][0][0]: int(frame_number), HEADER_KEYS["channel"][0][0]: int(channel),
              HEADER_KEYS["height"][0][0]: a.shape[0], HEADER_KEYS["width"][0][0]: a.shape[1],
              HEADER_KEYS["dtype"][0][0]: names[dstr]}
    for name, value in (("frameTimestamp", frame_timestamp), ("plane", plane), ("roi", roi)):
        if value is not None:
            header[HEADER_KEYS[name][0][0]] = value
    parts: list[bytes] = [b""] * len(LAYOUT)
    parts[HEADER_PART] = json.dumps(header).encode("utf-8")
    parts[PIXELS_PART] = a.astype(dstr, copy=False).tobytes()
    return parts


def example():
    """Protocol scanimage_zmq by example (rtdecode.sources.protocols.Example): one int16 frame."""
    from rtdecode.sources.protocols import Example

    image = (np.arange(48, dtype=np.int16) * 7).reshape(8, 6)
    return Example(source={}, extraction={"two_photon": {"rois": "rois"}},
                   messages=[encode_native(image, 1, channel=1, plane=1)], frame=image)
