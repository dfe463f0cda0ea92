"""Multi-ROI (mesoscope) scans: every (plane, scan ROI) field extracted by its own chain (its own
ROIs, its own registration reference), the activity vector plane-major, then scan ROI, then cell;
live over loopback from a rig file with source.scan_rois, and `rtdecode dataset` on a ScanImage
multi-ROI TIFF (2 planes x 2 ROIs stacked in each page, the ROI group in the file's metadata)."""

import json
import time

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.errors import ConfigError
from rtdecode.extract import build_chain, default_spec
from rtdecode.extract.offline import suite2p_reference
from rtdecode.extract.planes import Planes
from rtdecode.extract.rois import load_suite2p
from rtdecode.live.config import load_config
from rtdecode.live.run import run_session
from rtdecode.offline.dataset import Dataset
from rtdecode.outputs.session_reader import read_session
from rtdecode.rig.twophoton import Microscope
from rtdecode.sources import wire
from rtdecode.sources.scanimage import read_tiff_frames
from tests.live.test_calibration import _free_port, _serve
from tests.offline.test_tiff_dataset import FRAME_DATA, write_scanimage_tiff

VOLUMES = 100
ROI_SHAPES = {1: (48, 80), 2: (64, 96)}  # scan ROI -> (lines, pixels); the larger one second
GAP = 8  # flyback lines between two ROIs of a page
FIELDS = [(1, 1), (1, 2), (2, 1), (2, 2)]  # (plane, scan ROI), plane-major
CELLS = {(1, 1): 12, (1, 2): 9, (2, 1): 15, (2, 2): 7}


@pytest.fixture(scope="module")
def mroi(tmp_path_factory):
    """One virtual microscope per field, its suite2p folder suite2p/plane{k} in field order (as
    suite2p numbers a mesoscope's fields), and its green frames."""
    tmp = tmp_path_factory.mktemp("mroi")
    green = {}
    for k, (plane, roi) in enumerate(FIELDS):
        scope = Microscope(CELLS[(plane, roi)], seed=30 + k, frame_shape=ROI_SHAPES[roi])
        scope.save_rois(tmp / "suite2p" / f"plane{k}")
        green[(plane, roi)] = scope.render_movie(scope.poisson_spikes(VOLUMES, seed=k))
    return tmp, green


def _offline(tmp, green, fields=FIELDS, dtype=np.uint16):
    """Each field's own chain on its own frames, concatenated in the order of `fields`."""
    parts = []
    for plane, roi in fields:
        folder = tmp / "suite2p" / f"plane{FIELDS.index((plane, roi))}"
        chain = build_chain(default_spec(crop=(32, 32)), load_suite2p(folder), suite2p_reference(folder), frame_dtype=dtype)
        parts.append(np.stack([chain.process(f.astype(dtype)).copy() for f in green[(plane, roi)]]))
    return np.concatenate(parts, axis=1)


def test_fields_are_plane_major_then_scan_roi():
    class Row:  # a stand-in chain: activity = the first row of the frame
        def __init__(self, n):
            from rtdecode.stage import Spec
            self.out_spec = Spec(np.float32, (n,))

        def process(self, frame):
            return frame[0, : self.out_spec.shape[0]].astype(np.float32)

    p = Planes(1, [1, 2], [Row(1), Row(2), Row(1), Row(2)], scan_rois=[1, 2])
    assert p.fields == FIELDS and p.names() == ["plane1_roi1", "plane1_roi2", "plane2_roi1", "plane2_roi2"]
    assert p.ignore({"channel": 1, "plane": 2, "roi": 2}) is None and p.ignore({"channel": 1, "plane": 2}) is None
    assert p.ignore({"channel": 1, "plane": 2, "roi": 3}) == "other_roi"
    f = np.full((2, 4), 1.0, np.float32)
    assert p.add(1, f * 1, 1) is None and p.add(1, f * 2, 2) is None and p.add(2, f * 3, 1) is None
    np.testing.assert_array_equal(p.add(2, f * 4, 2), [1, 2, 2, 3, 4, 4])
    assert p.incomplete == 0
    assert p.order()["fields"][1] == {"plane": 1, "scan_roi": 2, "columns": [1, 3]}
    assert p.order()["order"] == "plane, then scan ROI, then cell"
    with pytest.raises(ConfigError, match="need 4 extraction chains"):
        Planes(1, [1, 2], [Row(1)], scan_rois=[1, 2])
    with pytest.raises(ConfigError, match="scan_rois must be listed once each, increasing"):
        Planes(1, [1], scan_rois=[2, 1])
    # a single-ROI rig (the default) keeps its names and its ROI-1-only selection
    q = Planes(1, [1, 2], [Row(1), Row(2)])
    assert q.names() == ["plane1", "plane2"] and q.ignore({"channel": 1, "plane": 1, "roi": 2}) == "other_roi"


def _messages(green):
    """ScanImage order: per volume, per plane (frameNumberAcq +1 per slice), every ROI of the plane
    (roiData order), every channel; a third scan ROI, not in the rig file, is acquired too."""
    seq = wire.Sequencer()
    out, acq = [], 0
    for v in range(VOLUMES):
        for plane in (1, 2):
            acq += 1
            for roi in (1, 2, 3):
                img = green[(plane, roi)][v] if roi in ROI_SHAPES else np.full((16, 16), 4095, np.uint16)
                red = np.full(img.shape, 4095, np.uint16)
                for channel, frame in ((1, img), (2, red)):
                    out.append(wire.encode("frame", seq(), time.time(), frame, frameNumberAcq=acq,
                                           frameTimestamp=acq / 60.0, channel=channel, plane=plane, roi=roi))
    out.append(wire.encode("stats", seq(), time.time(), None, end=True, frames=acq))
    return out


def _rig_file(tmp, endpoint, folders=4):
    rois = ", ".join(f"suite2p/plane{k}" for k in range(folders))
    (tmp / "rig.yaml").write_text(f"""
source:
  protocol: rtframe
  address: "{endpoint}"
  channel: 1
  planes: [1, 2]
  scan_rois: [1, 2]
extraction:
  two_photon: {{rois: [{rois}], crop: [32, 32]}}
outputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}
""")
    return tmp / "rig.yaml"


def test_multi_roi_scan_is_extracted_live_per_field(mroi, tmp_path):
    tmp, green = mroi
    endpoint, th = _serve(_messages(green))
    stats = run_session(_rig_file(tmp, endpoint), record=tmp_path / "calib", seconds=120)
    th.join(10)
    assert stats["frames"] == VOLUMES  # one activity vector per volume
    assert stats["ignored_frames"] == {"other_channel": 6 * VOLUMES, "other_plane": 0, "other_roi": 2 * VOLUMES}
    assert stats["incomplete_volumes"] == 0 and stats["lost_frames"] == 0
    assert set(stats["stages_ms"]) >= {f"plane{p}_roi{r}.register" for p, r in FIELDS}
    s = read_session(tmp_path / "calib")
    act = s["arrays"]["activity"]
    assert act.shape == (VOLUMES, sum(CELLS.values()))
    np.testing.assert_allclose(act, _offline(tmp, green), rtol=1e-5, atol=1e-5)  # plane-major, then ROI
    assert s["arrays"]["shifts"].shape == (VOLUMES, 4, 2)
    order = s["meta"]["activity_order"]
    assert order["order"] == "plane, then scan ROI, then cell"
    assert [(f["plane"], f["scan_roi"]) for f in order["fields"]] == FIELDS
    assert order["fields"][2]["columns"] == [21, 36]
    for p, r in FIELDS:
        assert (tmp_path / "calib" / f"rois_plane{p}_roi{r}.npz").is_file()
    # the NWB export: one imaging plane and segmentation per field, each series its columns
    pynwb = pytest.importorskip("pynwb")
    from rtdecode.offline.nwb_export import export_nwb

    rep = export_nwb(tmp_path / "calib", tmp_path / "s.nwb")
    assert not any("ROI masks" in m for m in rep["missing"])
    with pynwb.NWBHDF5IO(str(tmp_path / "s.nwb"), "r") as io:
        nwb = io.read()
        assert set(nwb.imaging_planes) == {f"ImagingPlane{p}Roi{r}" for p, r in FIELDS}
        assert "plane 2, scan ROI 1" in nwb.imaging_planes["ImagingPlane2Roi1"].description
        seg = nwb.processing["ophys"]["ImageSegmentation"]
        for p, r in FIELDS:
            assert len(seg[f"PlaneSegmentationPlane{p}Roi{r}"]) == CELLS[(p, r)]
        deconvolved = nwb.processing["ophys"]["Fluorescence"]["DeconvolvedPlane1Roi2"]
        np.testing.assert_array_equal(deconvolved.data[:], act[:, 12:21])


def test_rig_file_needs_one_folder_per_field(mroi):
    tmp, _ = mroi
    with pytest.raises(ConfigError, match=r"scan_rois \[1, 2\] are 4 fields, so give 4 suite2p folders"):
        load_config(_rig_file(tmp, "tcp://127.0.0.1:5999", folders=2))
    rig = _rig_file(tmp, "tcp://127.0.0.1:5999")
    assert load_config(rig).source.frame_fields == FIELDS
    rig.write_text(rig.read_text().replace("scan_rois: [1, 2]", "scan_rois: [2, 1]"))
    with pytest.raises(ConfigError, match=r"scan_rois.*list each scan ROI once, in increasing order"):
        load_config(rig)
    rig.write_text(rig.read_text().replace("scan_rois: [2, 1]", "scan_rois: [0]"))
    with pytest.raises(ConfigError, match="scan_rois"):
        load_config(rig)


def _mroi_tiff(path, green, roi_data_enabled=True):
    """ScanImage's multi-ROI TIFF: per volume, per plane one page per channel holding the ROIs
    stacked top to bottom (GAP flyback lines between them, the narrower ROI zero-padded right)."""
    H = sum(h for h, _ in ROI_SHAPES.values()) + GAP
    W = max(w for _, w in ROI_SHAPES.values())
    pages, n = [], 0
    for v in range(VOLUMES):
        for plane in (1, 2):
            n += 1
            page = np.zeros((H, W), np.int16)
            y = 0
            for roi, (h, w) in ROI_SHAPES.items():
                page[y:y + h, :w] = green[(plane, roi)][v].astype(np.int16)
                y += h + GAP
            desc = (f"frameNumbers = {n}\nacquisitionNumbers = 1\nframeNumberAcquisition = {n}\n"
                    f"frameTimestamps_sec = {(n - 1) / 60:.6f}\n")
            pages.append((page, desc))
            pages.append((np.full((H, W), 4000, np.int16), desc))  # red channel
    rois = [{"enable": True, "zs": [0, 10],
             "scanfields": [{"pixelResolutionXY": [w, h]}, {"pixelResolutionXY": [w, h]}]}
            for h, w in ROI_SHAPES.values()]
    rois.append({"enable": False, "scanfields": {"pixelResolutionXY": [8, 8]}})  # not scanned
    write_scanimage_tiff(path, pages, FRAME_DATA.replace("mroiEnable = false", "mroiEnable = true"),
                         {"RoiGroups": {"imagingRoiGroup": {"rois": rois}}})


def test_dataset_from_a_multi_roi_tiff(mroi, tmp_path, capsys):
    tmp, green = mroi
    (tmp_path / "tif").mkdir()
    _mroi_tiff(tmp_path / "tif" / "meso_00001.tif", green)
    frames = list(read_tiff_frames(tmp_path / "tif" / "meso_00001.tif"))
    assert len(frames) == VOLUMES * 2 * 2 * 2  # volumes x planes x channels x ROIs
    assert [(f.frame_number, f.channel, f.plane, f.roi) for f in frames[:5]] == [
        (1, 1, 1, 1), (1, 1, 1, 2), (1, 2, 1, 1), (1, 2, 1, 2), (2, 1, 2, 1)]
    np.testing.assert_array_equal(frames[4].image, green[(2, 1)][0].astype(np.int16))
    rng = np.random.default_rng(2)
    (tmp_path / "movies").mkdir()
    np.save(tmp_path / "movies" / "0.npy", rng.integers(0, 256, (VOLUMES, 36, 64)).astype(np.uint8))
    # volume v ends on frame number 2v + 2 (its second plane)
    (tmp_path / "log.csv").write_text("frame,trial,stim_frame\n" + "".join(f"{2 * v + 2},0,{v}\n"
                                                                         for v in range(VOLUMES)))
    folders = [str(tmp / "suite2p" / f"plane{k}") for k in range(4)]
    args = ["dataset", str(tmp_path / "tif"), "--stimulus-log", str(tmp_path / "log.csv"), "--movies",
            str(tmp_path / "movies"), "--planes", "1", "2", "--crop", "32", "32", "--fps", "30"]
    assert main(args + ["--rois", *folders, "--scan-rois", "1", "2", "--out", str(tmp_path / "ds")]) == 0
    ds = Dataset(tmp_path / "ds")
    assert ds.n_neurons == sum(CELLS.values())
    np.testing.assert_allclose(ds.load("0").responses, _offline(tmp, green, dtype=np.int16).T, rtol=1e-5, atol=1e-5)
    order = json.loads((tmp_path / "ds" / "meta" / "activity_order.json").read_text())
    assert [(f["plane"], f["scan_roi"]) for f in order["fields"]] == FIELDS
    # the default (no --scan-rois): ROI 1 of each plane, as before multi-ROI support
    assert main(args + ["--rois", folders[0], folders[2], "--out", str(tmp_path / "ds1")]) == 0
    ds1 = Dataset(tmp_path / "ds1")
    assert ds1.n_neurons == CELLS[(1, 1)] + CELLS[(2, 1)]
    np.testing.assert_allclose(ds1.load("0").responses,
                               _offline(tmp, green, [(1, 1), (2, 1)], dtype=np.int16).T, rtol=1e-5, atol=1e-5)
    order1 = json.loads((tmp_path / "ds1" / "meta" / "activity_order.json").read_text())
    assert [(f["plane"], f["scan_roi"]) for f in order1["fields"]] == [(1, 1), (2, 1)]
    # a folder missing: the message names the fields and the order
    assert main(args + ["--rois", *folders[:3], "--scan-rois", "1", "2", "--out", str(tmp_path / "ds2")]) != 0
    assert "need 4 suite2p folders (--rois, plane-major" in capsys.readouterr().err


def test_fitted_model_keeps_the_order_and_live_checks_it(mroi, tmp_path):
    """`rtdecode fit` copies the dataset's activity order into the model; `rtdecode run` refuses a rig
    file whose fields give other columns (here: the suite2p folders listed ROI-major by mistake)."""
    tmp, green = mroi
    (tmp_path / "tif").mkdir()
    _mroi_tiff(tmp_path / "tif" / "meso_00001.tif", green)
    (tmp_path / "movies").mkdir()
    for t in (0, 1):
        np.save(tmp_path / "movies" / f"{t}.npy",
                np.random.default_rng(3 + t).integers(0, 256, (VOLUMES, 36, 64)).astype(np.uint8))
    half = VOLUMES // 2  # two trials: one to fit, one to validate
    (tmp_path / "log.csv").write_text("frame,trial,stim_frame\n" + "".join(
        f"{2 * v + 2},{v // half},{v % half}\n" for v in range(VOLUMES)))
    folders = [str(tmp / "suite2p" / f"plane{k}") for k in range(4)]
    assert main(["dataset", str(tmp_path / "tif"), "--stimulus-log", str(tmp_path / "log.csv"), "--movies",
                 str(tmp_path / "movies"), "--planes", "1", "2", "--scan-rois", "1", "2", "--crop", "32", "32",
                 "--rois", *folders, "--out", str(tmp_path / "ds")]) == 0
    assert main(["fit", str(tmp_path / "ds"), "--out", str(tmp_path / "model"), "--window", "4"]) == 0
    order = json.loads((tmp_path / "model" / "activity_order.json").read_text())
    assert [(f["plane"], f["scan_roi"]) for f in order["fields"]] == FIELDS
    decoder = f"decoder: {{model: '{tmp_path / 'model'}', backends: [numpy]}}\n"
    endpoint, th = _serve(_messages(green))
    rig = _rig_file(tmp, endpoint)
    rig.write_text(rig.read_text() + decoder)
    stats = run_session(rig, seconds=120)
    th.join(10)
    assert stats["frames"] == VOLUMES and stats["published"] > 0
    swapped = rig.read_text().replace("suite2p/plane0, suite2p/plane1, suite2p/plane2, suite2p/plane3",
                                      "suite2p/plane0, suite2p/plane2, suite2p/plane1, suite2p/plane3")
    rig.write_text(swapped)
    with pytest.raises(ConfigError, match=r"decoder.model: the model was fitted on the fields"):
        run_session(rig, seconds=1)
