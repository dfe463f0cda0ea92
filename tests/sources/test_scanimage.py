"""ScanImage: the MATLAB driver's bytes (built in Python) and the TIFF replayer."""

import threading

import numpy as np
import pytest
import tifffile

from rtdecode.sources import wire
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.scanimage import (
    matlab_equivalent_message,
    parse_description,
    read_tiff_frames,
    replay_tiff,
)
from tests import ROOT

SIMA_TIF = ROOT / ".." / "shared" / "data" / "sima_2p_example" / "example.tif"


def test_scanimage_matlab_message_decodes_with_right_orientation():
    lines, pixels = 3, 5
    image = (np.arange(lines * pixels, dtype=np.int16) * 7 - 40).reshape(lines, pixels)  # image[y, x]
    image_data = image.T  # what ScanImage holds: imageData(x, y), pixels x lines
    frames = matlab_equivalent_message(image_data, seq=0, t=1763781234.25, frame_number_acq=12.0,
                                       frame_timestamp=0.4, channel=2.0, plane=1.0)
    assert frames[0] == b"frame"
    # typecast(data(:)) reads MATLAB's column-major memory: x fastest
    assert frames[2] == np.asfortranarray(image_data).tobytes(order="F") == image.tobytes()
    assert frames[1] == (b'{"v":1,"seq":0,"t":1763781234.25,"dtype":"<i2","shape":[3,5],'
                         b'"frameNumberAcq":12,"frameTimestamp":0.4,"channel":2,"plane":1,"roi":1}')
    msg = wire.decode(frames)
    assert msg.topic == "frame" and msg.seq == 0 and msg.header["frameNumberAcq"] == 12
    assert msg.array.shape == (lines, pixels)
    np.testing.assert_array_equal(msg.array, image)
    assert msg.array[0, 1] == image_data[1, 0]  # pixel x=1 of line y=0


def test_scanimage_description_parser():
    d = parse_description("frameNumbers = 7\nframeTimestamps_sec = 0.233100\nepoch = [2024 1 1]\n"
                          "acqTriggerTimestamps_sec = \nauxTrigger0 = []")
    assert d["frameNumbers"] == 7 and d["frameTimestamps_sec"] == pytest.approx(0.2331)
    assert d["epoch"] == [2024, 1, 1]  # tifffile's parser of ScanImage's MATLAB syntax
    assert parse_description("ImageJ=1.48v\nmin=0.0") == {"ImageJ": "1.48v", "min": 0.0}




def _replay_and_receive(path, **kw):
    ready = threading.Event()
    box = {}

    def on_ready(ep):
        box["ep"] = ep
        ready.set()

    th = threading.Thread(target=lambda: box.setdefault("stats", replay_tiff(path, ready=on_ready, **kw)),
                          daemon=True)
    th.start()
    assert ready.wait(5)
    ing = Ingest([box["ep"]], topics=("frame", "stats"))
    msgs = []
    try:
        for _ in range(1000):
            m = ing.receive(5000)
            assert m is not None, "replay stalled"
            if m.topic == "stats":
                break
            msgs.append(m)
        th.join(5)
    finally:
        ing.close()
    assert ing.n_rejected == 0 and ing.dropped == 0
    return msgs, box["stats"]


def test_scanimage_replay_plain_tiff_stack():
    if not SIMA_TIF.is_file():
        pytest.skip(f"real two-photon TIFF not found at {SIMA_TIF.resolve()} (see shared/data/README.md)")
    expected = tifffile.imread(SIMA_TIF)
    msgs, stats = _replay_and_receive(SIMA_TIF, speed=0, rate_hz=15.0)
    assert len(msgs) == stats["frames"] == 20
    assert [m.header["frameNumberAcq"] for m in msgs] == list(range(1, 21))
    assert msgs[3].header["frameTimestamp"] == pytest.approx(3 / 15.0)
    got = np.stack([m.array for m in msgs])
    assert got.dtype == np.uint16 and got.shape == (20, 128, 256)
    np.testing.assert_array_equal(got, expected)


def test_scanimage_replay_scanimage_tiff_metadata(tmp_path):
    path = tmp_path / "si.tif"
    rng = np.random.default_rng(0)
    frames = rng.integers(-100, 2000, size=(4, 6, 8)).astype(np.int16)
    numbers = [5, 6, 8, 9]  # frame 7 was not saved
    stamps = [0.0, 0.02, 0.06, 0.08]
    with tifffile.TiffWriter(path) as w:
        for img, n, ts in zip(frames, numbers, stamps):
            w.write(img, description=f"frameNumbers = {n}\nacquisitionNumbers = 1\n"
                                     f"frameNumberAcquisition = {n}\nframeTimestamps_sec = {ts:.6f}\n",
                    metadata=None)
    got = list(read_tiff_frames(path))
    assert [f.frame_number for f in got] == numbers
    assert [f.timestamp for f in got] == pytest.approx(stamps)
    msgs, stats = _replay_and_receive(path, speed=4.0)  # original timing, 4x faster
    assert [m.header["frameNumberAcq"] for m in msgs] == numbers
    assert [m.header["frameTimestamp"] for m in msgs] == pytest.approx(stamps)
    np.testing.assert_array_equal(np.stack([m.array for m in msgs]), frames)
    assert stats["recording_s"] == pytest.approx(0.08)
