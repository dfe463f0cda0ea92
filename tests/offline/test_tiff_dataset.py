"""ScanImage TIFFs read through tifffile (the BigTIFF metadata header ScanImage writes, per-page
descriptions), and a TIFF + a stimulus log turned into a fit dataset by the live extraction chain."""

import json
import struct

import numpy as np
import pytest
import tifffile

from rtdecode.cli import main
from rtdecode.errors import DatasetError
from rtdecode.extract import build_chain, default_spec
from rtdecode.extract.offline import suite2p_reference
from rtdecode.extract.rois import load_suite2p
from rtdecode.offline.dataset import Dataset
from rtdecode.offline.tiff_dataset import read_stimulus_log
from rtdecode.rig.twophoton import Microscope
from rtdecode.sources.scanimage import read_tiff_frames, split_rois, tiff_layout

SHAPE, VOLUMES = (96, 128), 100


def write_scanimage_tiff(path, pages, frame_data: str, roi_data: dict | None = None):
    """A BigTIFF laid out as ScanImage 2016+ writes it: at byte 16 the magic 0x07030301, version 3,
    the non-varying frame data (MATLAB syntax) and the ROI groups (JSON); then one IFD per page with
    its ImageDescription (frameNumbers, frameTimestamps_sec, ...) and Software (the frame data).
    pages: [(int16 or uint16 (H, W) image, description)]."""
    fd = frame_data.encode() + b"\0"
    rd = json.dumps(roi_data or {}).encode()
    out = bytearray(b"II" + struct.pack("<HHHQ", 43, 8, 0, 0))
    out += struct.pack("<IIII", 0x07030301, 3, len(fd), len(rd)) + fd + rd
    first = True
    for image, desc in pages:
        image = np.ascontiguousarray(image)
        sfmt = 2 if image.dtype.kind == "i" else 1
        while len(out) % 8:
            out += b"\0"
        data_at = len(out)
        out += image.astype(image.dtype.newbyteorder("<")).tobytes()
        desc_b, soft_b = desc.encode() + b"\0", frame_data.encode() + b"\0"
        desc_at = len(out)
        out += desc_b
        soft_at = len(out)
        out += soft_b
        while len(out) % 8:
            out += b"\0"
        ifd_at = len(out)
        H, W = image.shape
        tags = [(256, 4, 1, W), (257, 4, 1, H), (258, 3, 1, 16), (259, 3, 1, 1), (262, 3, 1, 1),
                (270, 2, len(desc_b), desc_at), (273, 16, 1, data_at), (277, 3, 1, 1), (278, 4, 1, H),
                (279, 16, 1, image.nbytes), (305, 2, len(soft_b), soft_at), (339, 3, 1, sfmt)]
        out += struct.pack("<Q", len(tags))
        for tag, typ, count, value in tags:
            out += struct.pack("<HHQQ", tag, typ, count, value)
        next_at = len(out)
        out += struct.pack("<Q", 0)
        if first:
            out[8:16] = struct.pack("<Q", ifd_at)
            first = False
        else:
            out[prev_next:prev_next + 8] = struct.pack("<Q", ifd_at)
        prev_next = next_at
    path.write_bytes(bytes(out))


FRAME_DATA = ("SI.VERSION_MAJOR = 2023\nSI.hChannels.channelSave = [1;2]\nSI.hStackManager.enable = true\n"
              "SI.hStackManager.numSlices = 2\nSI.hFastZ.enable = true\nSI.hRoiManager.scanFrameRate = 60\n"
              "SI.hRoiManager.mroiEnable = false")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """Two planes x two channels, int16 as ScanImage saves; green = each plane's virtual microscope."""
    tmp = tmp_path_factory.mktemp("si_tiff")
    green = {}
    for plane in (1, 2):
        scope = Microscope(15 + 10 * plane, seed=20 + plane, frame_shape=SHAPE)
        scope.save_rois(tmp / "suite2p" / f"plane{plane - 1}")
        green[plane] = scope.render_movie(scope.poisson_spikes(VOLUMES, seed=plane)).astype(np.int16)
    pages, n = [], 0
    for v in range(VOLUMES):
        for plane in (1, 2):
            n += 1
            desc = (f"frameNumbers = {n}\nacquisitionNumbers = 1\nframeNumberAcquisition = {n}\n"
                    f"frameTimestamps_sec = {(n - 1) / 60:.6f}\nepoch = [2026 11 29 14 0 0]\nauxTrigger0 = []\n")
            pages.append((green[plane][v], desc))
            pages.append((np.full(SHAPE, 4000 if v % 2 else 0, np.int16), desc))  # red channel
    write_scanimage_tiff(tmp / "calib_00001.tif", pages, FRAME_DATA)
    return tmp, green


def test_tifffile_reads_scanimage_metadata_channels_and_planes(recording):
    tmp, green = recording
    with tifffile.TiffFile(tmp / "calib_00001.tif") as tf:
        assert tf.scanimage_metadata["version"] == 3  # the header block, as tifffile reads it
        lay = tiff_layout(tf)
    assert lay.channels == [1, 2] and lay.planes == 2 and lay.rois == [] and lay.frame_rate == 60
    frames = list(read_tiff_frames(tmp / "calib_00001.tif"))
    assert len(frames) == 4 * VOLUMES
    assert [(f.frame_number, f.channel, f.plane) for f in frames[:6]] == [
        (1, 1, 1), (1, 2, 1), (2, 1, 2), (2, 2, 2), (3, 1, 1), (3, 2, 1)]
    assert frames[4].timestamp == pytest.approx(2 / 60, abs=1e-6)
    np.testing.assert_array_equal(frames[2].image, green[2][0])
    assert frames[2].image.dtype == np.int16


def test_multi_roi_pages_are_split(tmp_path):
    page = np.arange(30 * 8).reshape(30, 8)
    a, b = split_rois(page, [(10, 8), (14, 6)])  # 6 flyback lines between them
    np.testing.assert_array_equal(a, page[:10])
    np.testing.assert_array_equal(b, page[16:30, :6])
    with pytest.raises(DatasetError):
        split_rois(page, [(20, 8), (20, 8)])
    # the ROI sizes come from the file's RoiGroups (scanfields' pixelResolutionXY: x, y)
    groups = {"RoiGroups": {"imagingRoiGroup": {"rois": [
        {"enable": True, "scanfields": {"pixelResolutionXY": [8, 10]}},
        {"enable": True, "scanfields": {"pixelResolutionXY": [6, 14]}}]}}}
    write_scanimage_tiff(tmp_path / "m.tif", [(page.astype(np.int16), "frameNumbers = 1\nframeTimestamps_sec = 0\n")],
                         FRAME_DATA.replace("mroiEnable = false", "mroiEnable = true"), groups)
    with tifffile.TiffFile(tmp_path / "m.tif") as tf:
        assert tiff_layout(tf).rois == [(10, 8), (14, 6)]
    got = list(read_tiff_frames(tmp_path / "m.tif"))
    assert [f.roi for f in got] == [1, 2] and got[1].image.shape == (14, 6)


def test_tiff_and_stimulus_log_become_a_fit_dataset(recording, tmp_path):
    tmp, green = recording
    rng = np.random.default_rng(1)
    (tmp_path / "movies").mkdir()
    movies = {t: rng.integers(0, 256, (60, 36, 64)).astype(np.uint8) for t in (0, 1)}
    for t, m in movies.items():
        np.save(tmp_path / "movies" / f"{t}.npy", m)
    # volume v ends on frame number 2v + 2 (its second plane); trial 0 on volumes 2..46, trial 1 on 50..99
    rows = [(2 * v + 2, 0, v - 2) for v in range(2, 47)] + [(2 * v + 2, 1, v - 50) for v in range(50, 100)]
    (tmp_path / "log.csv").write_text("frame,trial,stim_frame\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    rois = [str(tmp / "suite2p" / "plane0"), str(tmp / "suite2p" / "plane1")]
    assert main(["dataset", str(tmp), "--stimulus-log", str(tmp_path / "log.csv"), "--movies",
                 str(tmp_path / "movies"), "--rois", *rois, "--planes", "1", "2", "--crop", "64", "64",
                 "--out", str(tmp_path / "ds")]) == 0
    ds = Dataset(tmp_path / "ds")
    assert ds.trials("train") == ["0", "1"] and ds.n_neurons == 25 + 35
    expected = []
    for k, plane in enumerate((1, 2)):  # each plane's own chain on its green frames only
        d = tmp / "suite2p" / f"plane{k}"
        chain = build_chain(default_spec(crop=(64, 64)), load_suite2p(d), suite2p_reference(d), frame_dtype=np.int16)
        expected.append(np.stack([chain.process(f).copy() for f in green[plane]]))
    expected = np.concatenate(expected, axis=1)  # (volumes, plane 1's ROIs then plane 2's)
    t0, t1 = ds.load("0"), ds.load("1")
    np.testing.assert_allclose(t0.responses, expected[2:47].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(t1.responses, expected[50:100].T, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(t0.video, movies[0][:45].astype(np.float32))
    assert main(["fit", str(tmp_path / "ds"), "--out", str(tmp_path / "model"), "--window", "4"]) == 0


def test_stimulus_log_errors_name_the_problem(tmp_path):
    (tmp_path / "a.csv").write_text("frame,trial\n1,0\n")
    with pytest.raises(DatasetError, match="first line must be 'frame,trial,stim_frame'"):
        read_stimulus_log(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("frame,trial,stim_frame\n0,0,0\n")
    with pytest.raises(DatasetError, match="frame numbers start at 1"):
        read_stimulus_log(tmp_path / "b.csv")
    np.save(tmp_path / "c.npy", np.array([[3, 0, 0], [3, 0, 1]]))
    with pytest.raises(DatasetError, match="listed more than once"):
        read_stimulus_log(tmp_path / "c.npy")


def test_rtdecode_rois_reads_one_plane_and_channel_of_a_scanimage_tiff(recording):
    """`rtdecode rois` input: the frames of --channel / --planes, in acquisition order (no suite2p run)."""
    from rtdecode.offline.detect_rois import read_frames

    tmp, green = recording
    for plane in (1, 2):
        frames, about = read_frames([tmp / "calib_00001.tif"], channel=1, plane=plane)
        assert frames.dtype == np.int16 and np.array_equal(frames, green[plane])
        assert about["plane"] == plane and about["inputs"][0]["frames"] == VOLUMES
    red, _ = read_frames([tmp], channel=2, plane=1)  # a folder of TIFFs
    assert red.shape == (VOLUMES,) + SHAPE and set(np.unique(red)) == {0, 4000}
    with pytest.raises(DatasetError, match=r"plane 3.*\(1, 1\), \(1, 2\), \(2, 1\), \(2, 2\)"):
        read_frames([tmp / "calib_00001.tif"], channel=1, plane=3)
