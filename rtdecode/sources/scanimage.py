"""ScanImage side in Python: the MATLAB driver's exact message, and a TIFF replayer (REFERENCES D).

`matlab_equivalent_message(...)` builds, from the same fields, the bytes that
`drivers/scanimage/rtdecode_frameAcquired.m` sends (rtframe v1, topic `frame`):

- ScanImage stores `imageData{ch}{z}` transposed: a MATLAB array of size [pixelsPerLine, linesPerFrame]
  (x, y). MATLAB memory is column-major, so its bytes, as `typecast(data(:), 'uint8')` reads them,
  are the C-order (row-major) bytes of the [lines, pixels] image: the driver sends them unchanged
  with `shape = [size(data,2) size(data,1)]` (lines, pixels). No copy, no transpose in MATLAB.
- The header is `jsonencode` of a struct with fields in this order: v, seq, t, dtype, shape,
  frameNumberAcq, frameTimestamp, channel (the ROI's `channels(c)`), plane (`sd.zIdx`), roi (index
  into `sd.roiData`, from 1). A ROI whose `transposed` is false holds [lines, pixels]; the driver
  transposes it first, so the bytes are the same. MATLAB numbers are doubles; jsonencode writes
  integral ones without a decimal point (`5`), which is what this function does.

`read_tiff_frames(path)` yields frames of a ScanImage TIFF, its metadata read by tifffile
(`TiffFile.scanimage_metadata`; per-frame `frameNumbers` and `frameTimestamps_sec` from each page's
description): channel from `SI.hChannels.channelSave`, plane from the page's place in the volume
(`SI.hStackManager` slices), multi-ROI pages split into their ROIs (`RoiGroups`); or of a plain TIFF
stack (index and a given rate). `replay_tiff(...)` publishes them as rtframe `frame`
messages at the original timing (`speed` 1), faster, or as fast as possible (`speed` 0).
"""

from __future__ import annotations

import json
import logging
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
                              frame_timestamp: float, channel: int, plane: int, roi: int = 1) -> list[bytes]:
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
              "plane": _matlab_number(plane), "roi": _matlab_number(roi)}
    return [b"frame", json.dumps(header, separators=(",", ":")).encode("utf-8"), payload]


# ---------------------------------------------------------------- TIFF reading

@dataclass
class TiffFrame:
    image: np.ndarray  # lines x pixels
    frame_number: int  # ScanImage frameNumbers (1-based), or index + 1
    timestamp: float  # s since the acquisition start
    channel: int = 1
    plane: int = 1
    roi: int = 1  # multi-ROI (mesoscope) scans: the ROI's index in the ROI group, from 1


def parse_description(text: str) -> dict:
    """A ScanImage page description (`key = value` lines, MATLAB syntax) -> dict, parsed by tifffile
    (numbers and arrays parsed, nothing evaluated); {} for text that is not in that form."""
    from tifffile.tifffile import matlabstr2py

    try:
        out = matlabstr2py(text or "")
    except Exception as exc:  # noqa: BLE001 -- foreign descriptions (ImageJ, OME) are not ours to judge
        log.debug("not a ScanImage description: %s", exc)
        return {}
    return out if isinstance(out, dict) else {}


@dataclass
class TiffLayout:
    """How a ScanImage TIFF's pages are ordered, from its non-varying metadata (`FrameData`)."""

    channels: list[int]  # SI.hChannels.channelSave: pages cycle through these first
    planes: int  # slices per volume (SI.hStackManager numSlices when a stack or FastZ is on), then
    rois: list[tuple[int, int]]  # multi-ROI: (lines, pixels) of each ROI, stacked top to bottom in a page
    frame_rate: float | None  # SI.hRoiManager.scanFrameRate


def tiff_layout(tf) -> TiffLayout:
    """The page layout of an open tifffile.TiffFile: ScanImage's own metadata as tifffile reads it
    (`TiffFile.scanimage_metadata`: the BigTIFF header block, or the first page's Software tag)."""
    frame_data, roi_groups = {}, {}
    try:
        meta = tf.scanimage_metadata or {}
    except Exception as exc:  # noqa: BLE001 -- a damaged header: fall back to the page tags below
        log.warning("ScanImage metadata unreadable (%s); using the first page's tags", exc)
        meta = {}
    frame_data = meta.get("FrameData") or {}
    roi_groups = meta.get("RoiGroups") or {}
    page = tf.pages[0]
    if not frame_data and (getattr(page, "software", "") or "")[:3] == "SI.":
        frame_data = parse_description(page.software)
    chans = np.atleast_1d(np.asarray(frame_data.get("SI.hChannels.channelSave", [1]))).astype(int).ravel().tolist()
    stack = bool(frame_data.get("SI.hStackManager.enable") or frame_data.get("SI.hFastZ.enable"))
    slices = frame_data.get("SI.hStackManager.actualNumSlices", frame_data.get("SI.hStackManager.numSlices", 1))
    planes = int(slices) if stack and isinstance(slices, (int, float)) and slices >= 1 else 1
    rois = []
    if frame_data.get("SI.hRoiManager.mroiEnable"):
        for roi in _as_list((roi_groups.get("imagingRoiGroup") or {}).get("rois")):
            if not roi.get("enable", True):
                continue
            field = _as_list(roi.get("scanfields"))[0] if roi.get("scanfields") else {}
            res = field.get("pixelResolutionXY")
            if res is not None:
                rois.append((int(res[1]), int(res[0])))
        if not rois:
            log.warning("multi-ROI scan without readable ROI sizes (RoiGroups): pages are read whole")
    rate = frame_data.get("SI.hRoiManager.scanFrameRate")
    return TiffLayout(chans or [1], planes, rois, float(rate) if isinstance(rate, (int, float)) else None)


def _as_list(v):
    return [] if v is None else v if isinstance(v, list) else [v]


def split_rois(image: np.ndarray, rois: list[tuple[int, int]]) -> list[np.ndarray]:
    """A multi-ROI page -> one image per ROI: ROIs are stacked top to bottom, the same number of
    flyback lines between each two (what is left of the page's lines, shared equally)."""
    if len(rois) < 2:
        return [image]
    lines = sum(h for h, _ in rois)
    gap, rest = divmod(image.shape[0] - lines, len(rois) - 1)
    if gap < 0 or rest:
        raise DatasetError(f"a {image.shape} page does not hold ROIs of {rois} lines with equal gaps")
    out, y = [], 0
    for h, w in rois:
        out.append(image[y:y + h, :w])
        y += h + gap
    return out


def read_tiff_frames(path, rate_hz: float | None = None):
    """Yield a TiffFrame per channel, plane and ROI of each page. ScanImage TIFFs: layout from the
    file's metadata (`tiff_layout`), per-frame `frameNumbers` and `frameTimestamps_sec` from each
    page's description (read by tifffile). Plain stacks: frame_number = index + 1, timestamp =
    index / rate_hz (default: the file's scan frame rate, else 30 Hz)."""
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"TIFF file not found: {path}")
    if rate_hz is not None and rate_hz <= 0:
        raise ConfigError(f"rate_hz must be > 0, got {rate_hz}")
    with tifffile.TiffFile(path) as tf:
        lay = tiff_layout(tf)
        rate = rate_hz or lay.frame_rate or 30.0
        C = len(lay.channels)
        for i, page in enumerate(tf.pages):
            img = page.asarray()
            if img.ndim != 2:
                raise DatasetError(f"{path} page {i}: expected a 2-D frame, got shape {img.shape}")
            text = getattr(page, "description", "") or ""
            d = parse_description(text) if page.is_scanimage or "frameNumbers" in text else {}
            fn = d.get("frameNumbers")
            ts = d.get("frameTimestamps_sec")
            if not (isinstance(fn, int) and isinstance(ts, (int, float))):
                fn, ts = i // C + 1, (i // C) / rate
            channel, plane = lay.channels[i % C], (i // C) % lay.planes + 1
            for r, sub in enumerate(split_rois(img, lay.rois), 1):
                yield TiffFrame(sub, int(fn), float(ts), channel, plane, r)


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
                                            frameTimestamp=f.timestamp, channel=f.channel, plane=f.plane,
                                            roi=f.roi))
        wall = time.perf_counter() - t0
        if send_end:
            sock.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True, frames=len(frames)))
    finally:
        sock.close()
    return {"frames": len(frames), "endpoint": bound, "wall_s": wall,
            "recording_s": (frames[-1].timestamp - first_ts) if frames else 0.0}
