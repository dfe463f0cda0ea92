"""ScanImage's own ZeroMQ stream: the source against a publisher written from the layout table in
rtdecode/sources/scanimage_zmq.py (an assumption: the vendor page read here does not give it), on
loopback, with the real two-photon TIFF's frames."""

import hashlib
import json
import socket
import threading
import time

import numpy as np
import pytest
import tifffile
import zmq

from rtdecode.errors import WireError
from rtdecode.sources import scanimage_zmq as sz
from rtdecode.sources import wire
from rtdecode.sources.probe import probe
from tests import ROOT

SIMA_TIF = next((p for p in (ROOT / ".." / "shared", ROOT / ".." / ".." / "shared")
                 if (p / "data" / "sima_2p_example" / "example.tif").is_file()),
                ROOT / ".." / "shared") / "data" / "sima_2p_example" / "example.tif"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _frames():
    if SIMA_TIF.is_file():
        return tifffile.imread(SIMA_TIF).astype(np.int16)  # 12-bit values: int16 as ScanImage acquires
    return (np.arange(6 * 16 * 24) % 4095).astype(np.int16).reshape(6, 16, 24)


def _publisher(endpoint, messages, started: threading.Event, wait_s=20.0):
    """ScanImage as the vendor describes it: it binds and publishes (XPUB here only to wait for the
    subscriber, so no frame is lost to the slow-joiner; a plain PUB to the subscriber)."""
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 2000)
    pub.bind(endpoint)
    started.set()
    try:
        if pub.poll(int(wait_s * 1000)):
            pub.recv()
            for parts in messages:
                pub.send_multipart(parts)
    finally:
        pub.close()


def test_decode_native_layout_and_aliases():
    img = (np.arange(12, dtype=np.int16) - 6).reshape(3, 4)
    parts = sz.encode_native(img, frame_number=7, channel=2, frame_timestamp=0.25, plane=3, roi=1)
    assert json.loads(parts[sz.HEADER_PART]) == {"frameNumber": 7, "channel": 2, "height": 3, "width": 4,
                                                 "dataType": "int16", "frameTimestamp": 0.25, "zIdx": 3, "roi": 1}
    assert parts[sz.PIXELS_PART] == img.astype("<i2").tobytes()
    msg = sz.decode_native(parts, seq=5, t=100.0)
    assert msg.topic == "frame" and msg.seq == 5 and msg.array.shape == (3, 4)
    np.testing.assert_array_equal(msg.array, img)
    h = msg.header
    assert (h["frameNumberAcq"], h["channel"], h["plane"], h["roi"], h["dtype"]) == (7, 2, 3, 1, "<i2")
    # the rtframe header is a valid rtframe message downstream
    again = wire.decode(wire.encode("frame", h["seq"], h["t"], msg.array, **{k: v for k, v in h.items()
                                    if k not in ("v", "seq", "t", "dtype", "shape")}))
    np.testing.assert_array_equal(again.array, img)
    # the alternative key names, defaults (int16, plane 1, roi 1)
    alt = [json.dumps({"frameNumberAcq": 1, "channel": 1, "linesPerFrame": 3, "pixelsPerLine": 4}).encode(),
           img.tobytes()]
    m = sz.decode_native(alt, 0, 0.0)
    assert m.header["plane"] == 1 and m.header["roi"] == 1 and "frameTimestamp" not in m.header


@pytest.mark.parametrize("parts, reason", [
    ([b"{}"], "expected 2 parts"),
    ([b"frame", b"{}", b""], "expected 2 parts"),
    ([b"\xff\xfe", b""], "not UTF-8 JSON"),
    ([b"[1, 2]", b""], "must be a JSON object"),
    ([b'{"channel": 1, "height": 2, "width": 2}', b"\0" * 8], "lacks 'frameNumber' or 'frameNumberAcq'"),
    ([b'{"frameNumber": 1, "channel": 1, "height": 2, "width": 2}', b"\0" * 7], "needs 8"),
    ([b'{"frameNumber": 1, "channel": 1, "height": 2, "width": 2, "dataType": "complex"}', b""], "unknown"),
    ([b'{"frameNumber": 1.5, "channel": 1, "height": 2, "width": 2}', b"\0" * 8], "integer"),
])
def test_decode_native_rejects_with_reason(parts, reason):
    with pytest.raises(WireError, match=reason):
        sz.decode_native(parts, 0, 0.0)


def test_scanimage_zmq_source_on_loopback_with_stimulus():
    movie = _frames()
    port, stim_port = _free_port(), _free_port()
    ep, stim_ep = f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{stim_port}"
    numbers = [k + 1 for k in range(len(movie)) if k != 3]  # frame 4 lost on the way
    msgs = [sz.encode_native(movie[n - 1], n, channel=1, frame_timestamp=(n - 1) / 30) for n in numbers]
    msgs.insert(2, [b"frame", b"{}", b"xx"])  # a message that does not fit the layout
    started, stim_started = threading.Event(), threading.Event()
    stim = [wire.encode("stim", i, time.time(), np.zeros((2, 2), np.uint8), frame=i, trial=0) for i in range(3)]
    threads = [threading.Thread(target=_publisher, args=(ep, msgs, started), daemon=True),
               threading.Thread(target=_publisher, args=(stim_ep, stim, stim_started), daemon=True)]
    for t in threads:
        t.start()
    assert started.wait(5) and stim_started.wait(5)
    ing = sz.ScanImageZmqIngest(ep, stim_endpoints=[stim_ep])
    frames, stims = [], []
    try:
        end = time.monotonic() + 30
        while (len(frames) < len(numbers) or len(stims) < 3) and time.monotonic() < end:
            m = ing.receive(timeout_ms=100)
            if m is not None:
                (frames if m.topic == "frame" else stims).append(m)
        c = ing.counts()
    finally:
        ing.close()
    assert [m.header["frameNumberAcq"] for m in frames] == numbers
    assert [m.seq for m in frames] == list(range(len(numbers)))
    for m in frames:
        np.testing.assert_array_equal(m.array, movie[m.header["frameNumberAcq"] - 1])
        assert m.header["frameTimestamp"] == pytest.approx((m.header["frameNumberAcq"] - 1) / 30)
    assert [m.header["frame"] for m in stims] == [0, 1, 2]
    assert c["dropped"] == 1 and c["rejected"] == 1 and c["restarts"] == 0, c
    assert ing.first_rejected["parts"] == 3 and ing.first_rejected["sizes"] == [5, 2, 2]


def test_probe_scanimage_zmq_bit_exact():
    movie = _frames()
    port = _free_port()
    ep = f"tcp://127.0.0.1:{port}"
    msgs = [sz.encode_native(movie[k], k + 1, channel=2, plane=k % 2 + 1) for k in range(len(movie))]
    started = threading.Event()
    t = threading.Thread(target=_publisher, args=(ep, msgs, started), daemon=True)
    t.start()
    assert started.wait(5)
    r = probe(ep, "scanimage_zmq", seconds=30, idle_s=1.0)
    t.join(5)
    assert r["frames"] == len(movie) and r["dropped"] == 0 and r["rejected"] == 0, r
    assert r["frame_sha256"] == hashlib.sha256(movie.astype("<i2").tobytes()).hexdigest()
    assert r["frame_streams"] == {"channel 2 plane 1 roi 1": (len(movie) + 1) // 2,
                                  "channel 2 plane 2 roi 1": len(movie) // 2}
    assert r["header_keys"] == ["channel", "dataType", "frameNumber", "height", "width", "zIdx"]
