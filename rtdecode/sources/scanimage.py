"""ScanImage side in Python: the MATLAB driver's exact message, and a TIFF replayer (REFERENCES D).

`matlab_equivalent_message(...)` builds, from the same fields, the bytes that
`drivers/scanimage/rtdecode_frameAcquired.m` sends (rtframe v1, topic `frame`):

- ScanImage stores `imageData{ch}{z}` transposed: a MATLAB array of size [pixelsPerLine, linesPerFrame]
  (x, y). MATLAB memory is column-major, so its bytes, as `typecast(data(:), 'uint8')` reads them,
  are the C-order (row-major) bytes of the [lines, pixels] image: the driver sends them unchanged
  with `shape = [size(data,2) size(data,1)]` (lines, pixels). No copy, no transpose in MATLAB.
- The header is `jsonencode` of a struct with fields in this order: v, seq, t, dtype, shape,
  frameNumberAcq, frameTimestamp, channel, plane. MATLAB numbers are doubles; jsonencode writes
  integral ones without a decimal point (`5`), which is what this function does.

`read_tiff_frames(path)` yields frames of a ScanImage TIFF (per-frame `frameNumbers` and
`frameTimestamps_sec` from each page's ImageDescription; channel from `SI.hChannels.channelSave`) or of
a plain TIFF stack (index and a given rate). `replay_tiff(...)` publishes them as rtframe `frame`
messages at the original timing (`speed` 1), faster, or as fast as possible (`speed` 0).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from rtdecode.sources import exposure, wire
from rtdecode.errors import ConfigError, DatasetError

log = logging.getLogger(__name__)

MATLAB_DTYPES = {"int16": "<i2", "uint16": "<u2", "int8": "|i1", "uint8": "|u1", "int32": "<i4", "single": "<f4"}


def _matlab_number(x):
    """A number as MATLAB's jsonencode writes a double: integral values without a decimal point."""
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    x = float(x)
    return int(x) if x.is_integer() and abs(x) < 2**53 else x


def matlab_equivalent_message(image_data: np.ndarray, seq: int, t: float, frame_number_acq: int,
                              frame_timestamp: float, channel: int, plane: int) -> list[bytes]:
    """The three frames the MATLAB driver sends for `image_data`, given as ScanImage holds it.

    `image_data` is the MATLAB array imageData{ch}{z}: shape (pixelsPerLine, linesPerFrame), indexed
    (x, y) as in MATLAB. Its MATLAB memory order is Fortran order, which `typecast(data(:), 'uint8')`
    reads.
    """
    a = np.asarray(image_data)
    if a.ndim != 2:
        raise ConfigError(f"imageData must be 2-D (pixels x lines), got shape {a.shape}")
    dtype = np.dtype(a.dtype).newbyteorder("<") if a.dtype.itemsize > 1 else a.dtype
    dstr = np.dtype(dtype).str
    if dstr not in MATLAB_DTYPES.values():
        raise ConfigError(f"imageData class {a.dtype} is not sent by the driver; valid: {', '.join(MATLAB_DTYPES)}")
    payload = np.asarray(a, dtype=dtype).tobytes(order="F")  # typecast(data(:), 'uint8')
    header = {"v": 1, "seq": _matlab_number(seq), "t": _matlab_number(t), "dtype": dstr,
              "shape": [int(a.shape[1]), int(a.shape[0])], "frameNumberAcq": _matlab_number(frame_number_acq),
              "frameTimestamp": _matlab_number(frame_timestamp), "channel": _matlab_number(channel),
              "plane": _matlab_number(plane)}
    return [b"frame", json.dumps(header, separators=(",", ":")).encode("utf-8"), payload]


# ---------------------------------------------------------------- TIFF reading

@dataclass
class TiffFrame:
    image: np.ndarray  # lines x pixels
    frame_number: int  # ScanImage frameNumbers (1-based), or index + 1
    timestamp: float  # s since the acquisition start
    channel: int = 1
    plane: int = 1


_KV = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=\s*(.*?)\s*$")


def parse_description(text: str) -> dict:
    """`key = value` lines of a ScanImage page description -> dict (numbers parsed, nothing evaluated)."""
    out = {}
    for line in (text or "").splitlines():
        m = _KV.match(line)
        if not m:
            continue
        k, v = m.groups()
        try:
            out[k] = int(v)
        except ValueError:
            try:
                out[k] = float(v)
            except ValueError:
                out[k] = v.strip("'")
    return out


def _channels_saved(tf) -> list[int]:
    try:
        meta = tf.scanimage_metadata or {}
        saved = meta.get("FrameData", {}).get("SI.hChannels.channelSave")
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:  # foreign metadata
        log.debug("no ScanImage metadata: %s", exc)
        return [1]
    if saved is None:
        return [1]
    saved = np.atleast_1d(np.asarray(saved)).astype(int).ravel().tolist()
    return saved or [1]


def read_tiff_frames(path, rate_hz: float = 30.0):
    """Yield TiffFrame per page. Plain stacks: frame_number = index + 1, timestamp = index / rate_hz."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"TIFF file not found: {path}")
    if rate_hz <= 0:
        raise ConfigError(f"rate_hz must be > 0, got {rate_hz}")
    with tifffile.TiffFile(path) as tf:
        chans = _channels_saved(tf)
        for i, page in enumerate(tf.pages):
            img = page.asarray()
            if img.ndim != 2:
                raise DatasetError(f"{path} page {i}: expected a 2-D frame, got shape {img.shape}")
            d = parse_description(getattr(page, "description", "") or "")
            fn = d.get("frameNumbers")
            ts = d.get("frameTimestamps_sec")
            if isinstance(fn, int) and isinstance(ts, (int, float)):
                yield TiffFrame(img, fn, float(ts), chans[i % len(chans)], 1)
            else:
                k = i // len(chans)
                yield TiffFrame(img, k + 1, k / rate_hz, chans[i % len(chans)], 1)


def replay_tiff(path, endpoint: str = "tcp://127.0.0.1:*", speed: float = 1.0, rate_hz: float = 30.0,
                wait_subscriber_s: float = 10.0, ready=None, max_frames: int | None = None,
                send_end: bool = True, context: zmq.Context | None = None) -> dict:
    """Publish the TIFF's frames as rtframe `frame` messages (XPUB: waits for the first subscriber).

    `ready`, if given, is called with the bound endpoint before waiting. A `stats` message with
    `"end": true` closes the stream when `send_end`.
    """
    frames = list(read_tiff_frames(path, rate_hz))
    if max_frames is not None:
        frames = frames[:max_frames]
    ctx = context or zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.bind(endpoint)
    bound = exposure.bound(sock, "the ScanImage sender")
    if ready is not None:
        ready(bound)
    try:
        if wait_subscriber_s > 0:
            if not sock.poll(int(wait_subscriber_s * 1000)):
                raise TimeoutError(f"no subscriber connected to {bound} within {wait_subscriber_s} s")
            sock.recv()
            time.sleep(0.05)
        seq = wire.Sequencer()
        t0 = time.perf_counter()
        first_ts = frames[0].timestamp if frames else 0.0
        for f in frames:
            if speed > 0:
                delay = t0 + (f.timestamp - first_ts) / speed - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            sock.send_multipart(wire.encode("frame", seq(), time.time(), f.image, frameNumberAcq=f.frame_number,
                                            frameTimestamp=f.timestamp, channel=f.channel, plane=f.plane))
        wall = time.perf_counter() - t0
        if send_end:
            sock.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True, frames=len(frames)))
    finally:
        sock.close()
    return {"frames": len(frames), "endpoint": bound, "wall_s": wall,
            "recording_s": (frames[-1].timestamp - first_ts) if frames else 0.0}
