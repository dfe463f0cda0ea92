"""The two-photon part of a session's NWB file (rtdecode.offline.nwb_export): the microscope, its
imaging plane and processing/ophys -- the ROI and neuropil segmentation (pixel masks from the
session's rois.npz or a suite2p folder), Fluorescence (F, Fneu, the deconvolved activity), DfOverF,
MotionShifts and the registration reference. pynwb is imported inside the functions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.offline.session_chunks import SessionChunks
from rtdecode.outputs.record import rois_npz


def rois_arrays(folder: Path, meta: dict, rois_dir: str | Path | None) -> dict | None:
    """The ROI masks: from --rois (a suite2p folder) if given, else the session's rois.npz, else the
    rig file's suite2p folder if it still exists; None if none is found."""
    if rois_dir is None:
        path = folder / "rois.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files} | {"source": f"{path} (recorded with the session)"}
        tp = ((meta.get("config") or {}).get("extraction") or {}).get("two_photon") or {}
        if tp.get("rois") and Path(tp["rois"]).is_dir():
            rois_dir = tp["rois"]
        else:
            return None
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.rois import load_suite2p

    return rois_npz(load_suite2p(rois_dir), suite2p_reference(rois_dir)) | {"source": f"suite2p folder {rois_dir}"}


def pixel_masks(rois: dict, key: str) -> list[list[tuple[int, int, float]]]:
    """Per ROI, NWB pixel_mask rows (x, y, weight) from the CSR parts over the flattened frame."""
    W = int(rois["frame_shape"][1])
    indptr, idx, w = rois[f"{key}_indptr"], rois[f"{key}_indices"], rois[f"{key}_weights"]
    masks = []
    for i in range(len(indptr) - 1):
        flat = idx[indptr[i]:indptr[i + 1]]
        masks.append(list(zip((flat % W).tolist(), (flat // W).tolist(), w[indptr[i]:indptr[i + 1]].tolist())))
    return masks



def add_ophys(nwb, folder: Path, rois, chunks: SessionChunks, meta: dict, config: dict, protocol: str,
              stream, clock, types: set, missing: list) -> None:
    """Two-photon: the microscope, its imaging plane and processing/ophys (ROI segmentation, traces,
    motion, registration reference). `stream(key)` wraps a recorded per-frame array for writing;
    every series takes its timestamps from `clock`."""
    from pynwb import TimeSeries
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel

    tp = (config.get("extraction") or {}).get("two_photon") or {}
    fps = float(tp.get("fps", meta.get("fps", 30.0)))
    addresses = ", ".join((config.get("source") or {}).get("address", [])) or meta.get("source", "")
    device = nwb.create_device(name="Microscope",
                               description=f"two-photon microscope streaming to rtdecode ({protocol}: {addresses})")
    channel = OpticalChannel(name="OpticalChannel", description="not recorded by rtdecode", emission_lambda=np.nan)
    plane = nwb.create_imaging_plane(name="ImagingPlane", optical_channel=channel, imaging_rate=fps,
                                     description="the field of view extracted live", device=device,
                                     excitation_lambda=np.nan, indicator="unknown (not recorded by rtdecode)",
                                     location="unknown (not recorded by rtdecode)")
    types |= {"Device", "OpticalChannel", "ImagingPlane"}
    ophys = nwb.create_processing_module("ophys", "two-photon extraction as run live by rtdecode "
                                         "(registration, ROI and neuropil traces, dF/F, deconvolution)")
    masks = rois_arrays(folder, meta, rois)
    seg = None
    if masks is not None and len(masks["index"]) != chunks.specs["activity"][0][0]:
        raise RecordError(f"the ROI masks ({masks['source']}) hold {len(masks['index'])} ROIs but the session "
                          f"recorded {chunks.specs['activity'][0][0]} neurons; give the suite2p folder used live")
    if masks is not None:
        iseg = ImageSegmentation(name="ImageSegmentation")
        ophys.add(iseg)
        seg = iseg.create_plane_segmentation(
            name="PlaneSegmentation", imaging_plane=plane,
            description=f"the ROIs used live ({masks['source']}): pixel_mask (x, y, weight), weights = "
            "suite2p lam normalised to sum 1")
        seg.add_column("source_index", "each ROI's index in the source segmentation (suite2p stat.npy)")
        for m, i in zip(pixel_masks(masks, "roi"), masks["index"].tolist()):
            seg.add_roi(pixel_mask=m, source_index=int(i))
        neu = iseg.create_plane_segmentation(
            name="NeuropilSegmentation", imaging_plane=plane,
            description="each ROI's neuropil annulus as used live (uniform weights summing to 1), same "
            "order as PlaneSegmentation")
        for m in pixel_masks(masks, "neuropil"):
            neu.add_roi(pixel_mask=m)
        types |= {"ImageSegmentation", "PlaneSegmentation"}
        if "reference" in masks:
            ophys.add(Images(name="SummaryImages", description="images of the extraction", images=[
                GrayscaleImage(name="registration_reference", data=masks["reference"],
                               description="the image frames were registered to, (height, width)")]))
            types |= {"Images", "GrayscaleImage"}
    else:
        missing.append("ROI masks: the session has no rois.npz (recorded by an older rtdecode); give --rois")

    containers: dict = {}

    def traces(container, name, key, unit, desc):
        """An RoiResponseSeries in `container` (Fluorescence / DfOverF) over every ROI; without
        ROI masks, a plain TimeSeries in the ophys module."""
        if seg is None:
            ophys.add(TimeSeries(name=name, data=stream(key), unit=unit, timestamps=clock,
                                 description=desc + " (ROI masks unknown)"))
            return
        from pynwb.ophys import RoiResponseSeries

        if container not in containers:
            containers[container] = (Fluorescence if container == "Fluorescence" else DfOverF)(name=container)
            ophys.add(containers[container])
            types.add(container)
        region = seg.create_roi_table_region(region=list(range(len(seg))), description="all ROIs")
        containers[container].add_roi_response_series(RoiResponseSeries(
            name=name, data=stream(key), rois=region, unit=unit, timestamps=clock, description=desc))
        types.add("RoiResponseSeries")

    for name, key, desc in (("Fluorescence", "F", "ROI fluorescence F (lam-weighted mean), (frame, ROI)"),
                            ("Neuropil", "Fneu", "neuropil fluorescence Fneu (annulus mean), (frame, ROI)")):
        if key in chunks.specs:
            traces("Fluorescence", name, key, "a.u. (frame counts)", desc)
        else:
            missing.append(f"{name} ({key}): not recorded by this session (older rtdecode)")
    traces("Fluorescence", "Deconvolved", "activity", "a.u.", "deconvolved activity: the decoder's input, "
           "(frame, ROI)")
    if "dff" in chunks.specs:
        traces("DfOverF", "DfOverF", "dff", "ratio", "dF/F of the neuropil-corrected trace, (frame, ROI)")
    else:
        missing.append("dF/F: not recorded by this session (older rtdecode)")
    if "shifts" in chunks.specs:
        ophys.add(TimeSeries(name="MotionShifts", data=stream("shifts"), unit="pixels", timestamps=clock,
                             description="rigid registration shift (dy, dx) of each frame, (frame, 2)"))
    else:
        missing.append("motion estimates: not recorded by this session (older rtdecode)")
