"""The two-photon part of a session's NWB file (rtdecode.offline.nwb_export): the microscope, one
imaging plane per plane extracted live, and processing/ophys -- per plane the ROI and neuropil
segmentation (pixel masks from the session's rois.npz, or rois_plane{p}.npz per plane, or a suite2p
folder), Fluorescence (F, Fneu, the deconvolved activity), DfOverF, MotionShifts and the
registration reference. pynwb is imported inside the functions."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.offline.session_chunks import SessionChunks
from rtdecode.outputs.record import rois_npz
from rtdecode.outputs.session_reader import load_npz

log = logging.getLogger(__name__)


def _suite2p(folder) -> dict:
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.rois import load_suite2p

    return rois_npz(load_suite2p(folder), suite2p_reference(folder)) | {"source": f"suite2p folder {folder}"}


def plane_masks(folder: Path, meta: dict, rois_dir: str | Path | None) -> list[tuple[int | str | None, dict]] | None:
    """[(plane, ROI masks)] in the activity vector's order (plane None: a single-plane session):
    from --rois (a suite2p folder) if given, else the session's rois.npz, else its
    rois_plane{p}_roi{r}.npz (a multi-ROI scan: label '{p}Roi{r}', in session.json's activity_order),
    else its rois_plane{p}.npz (one per plane, in source.planes order), else the rig file's suite2p folder(s) if they still
    exist; None if none is found. RecordError if a file is not plain arrays (rtdecode.outputs.
    session_reader.load_npz: object arrays and oversized ones are refused unread)."""
    if rois_dir is not None:
        return [(None, _suite2p(rois_dir))]
    path = folder / "rois.npz"
    if path.is_file():
        return [(None, load_npz(path, "rois.npz (the ROI masks)") | {"source": f"{path} (recorded with the session)"})]
    config = meta.get("config") or {}
    per_field = {(int(m.group(1)), int(m.group(2))): p for p in folder.glob("rois_plane*_roi*.npz")
                 if (m := re.fullmatch(r"rois_plane(\d+)_roi(\d+)\.npz", p.name))}
    if per_field:  # a multi-ROI scan: one file per (plane, scan ROI), labelled '{p}Roi{r}'
        listed = [(f["plane"], f["scan_roi"]) for f in (meta.get("activity_order") or {}).get("fields", [])]
        fields = [f for f in listed if f in per_field] + sorted(set(per_field) - set(listed))
        return [(f"{p}Roi{r}", load_npz(per_field[(p, r)], f"rois_plane{p}_roi{r}.npz (the ROI masks of plane {p}, "
                                        f"scan ROI {r})") | {"source": f"{per_field[(p, r)]} (recorded with the session)"})
                for p, r in fields]
    order = (config.get("source") or {}).get("planes") or []
    per_plane = {int(m.group(1)): p for p in folder.glob("rois_plane*.npz")
                 if (m := re.fullmatch(r"rois_plane(\d+)\.npz", p.name))}
    if per_plane:
        planes = [p for p in order if p in per_plane] + sorted(set(per_plane) - set(order))
        return [(p, load_npz(per_plane[p], f"rois_plane{p}.npz (the ROI masks of plane {p})")
                 | {"source": f"{per_plane[p]} (recorded with the session)"}) for p in planes]
    tp = (config.get("extraction") or {}).get("two_photon") or {}
    given = tp.get("rois")
    folders = given if isinstance(given, list) else [given] if given else []
    if folders and all(isinstance(f, str) and Path(f).is_dir() for f in folders):
        if len(folders) == 1:
            return [(None, _suite2p(folders[0]))]
        planes = order if len(order) == len(folders) else list(range(1, len(folders) + 1))
        return [(p, _suite2p(f)) for p, f in zip(planes, folders)]
    return None


def _field_text(p) -> str:
    """' (ScanImage plane 2)', ' (ScanImage plane 2, scan ROI 1)' for a multi-ROI label '2Roi1', or ''."""
    if p is None:
        return ""
    if isinstance(p, str) and "Roi" in p:
        plane, roi = p.split("Roi")
        return f" (ScanImage plane {plane}, scan ROI {roi})"
    return f" (ScanImage plane {p})"


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
              stream, clock, types: set, missing: list, info: dict | None = None) -> None:
    """Two-photon: the microscope, its imaging plane(s) and processing/ophys (ROI segmentation, traces,
    motion, registration reference). `stream(key, columns)` wraps a recorded per-frame array (or a
    range of its columns) for writing; every series takes its timestamps from `clock`. `info`: the
    session metadata's imaging_plane (location, indicator, excitation_nm, emission_nm)."""
    from pynwb import TimeSeries
    from pynwb.base import Images
    from pynwb.image import GrayscaleImage
    from pynwb.ophys import DfOverF, Fluorescence, ImageSegmentation, OpticalChannel, RoiResponseSeries

    info = info or {}
    tp = (config.get("extraction") or {}).get("two_photon") or {}
    fps = float(tp.get("fps", meta.get("fps", 30.0)))
    n_rois = chunks.specs["activity"][0][0]
    addresses = ", ".join((config.get("source") or {}).get("address", [])) or meta.get("source", "")
    try:
        masks = plane_masks(folder, meta, rois)
    except RecordError as exc:  # a ROI file that is not plain arrays: only reached with allow_damaged
        masks = None
        missing.append(f"ROI masks: {exc}")
    if masks is not None and sum(len(m["index"]) for _, m in masks) != n_rois:
        raise RecordError(f"the ROI masks ({'; '.join(m['source'] for _, m in masks)}) hold "
                          f"{sum(len(m['index']) for _, m in masks)} ROIs but the session recorded {n_rois} neurons; "
                          "give the suite2p folder used live (--rois)")
    planes = [p for p, _ in masks] if masks is not None else (config.get("source") or {}).get("planes") or [None]
    several = len(planes) > 1
    device = nwb.create_device(name="Microscope",
                               description=f"two-photon microscope streaming to rtdecode ({protocol}: {addresses})")
    unknown = "unknown (not recorded by rtdecode; give session_metadata.imaging_plane in the rig file)"
    imaging = {}
    for p in planes:
        channel = OpticalChannel(name="OpticalChannel", description="the imaging channel extracted live",
                                 emission_lambda=float(info.get("emission_nm") or np.nan))
        imaging[p] = nwb.create_imaging_plane(
            name=f"ImagingPlane{p}" if several else "ImagingPlane", optical_channel=channel, imaging_rate=fps,
            description=f"the field of view extracted live{_field_text(p)}",
            device=device, excitation_lambda=float(info.get("excitation_nm") or np.nan),
            indicator=info.get("indicator") or unknown, location=info.get("location") or unknown)
    types |= {"Device", "OpticalChannel", "ImagingPlane"}
    ophys = nwb.create_processing_module("ophys", "two-photon extraction as run live by rtdecode "
                                         "(registration, ROI and neuropil traces, dF/F, deconvolution)")
    # per plane: (its suffix, its PlaneSegmentation, its columns of the activity vector)
    segs: list[tuple[str, object, slice]] = []
    if masks is not None:
        iseg = ImageSegmentation(name="ImageSegmentation")
        ophys.add(iseg)
        images, start = [], 0
        for p, m in masks:
            suffix = f"Plane{p}" if several else ""
            seg = iseg.create_plane_segmentation(
                name=f"PlaneSegmentation{suffix}", imaging_plane=imaging[p],
                description=f"the ROIs used live ({m['source']}): pixel_mask (x, y, weight), weights = "
                "suite2p lam normalised to sum 1")
            seg.add_column("source_index", "each ROI's index in the source segmentation (suite2p stat.npy)")
            for mask, i in zip(pixel_masks(m, "roi"), m["index"].tolist()):
                seg.add_roi(pixel_mask=mask, source_index=int(i))
            neu = iseg.create_plane_segmentation(
                name=f"NeuropilSegmentation{suffix}", imaging_plane=imaging[p],
                description="each ROI's neuropil annulus as used live (uniform weights summing to 1), same "
                f"order as PlaneSegmentation{suffix}")
            for mask in pixel_masks(m, "neuropil"):
                neu.add_roi(pixel_mask=mask)
            segs.append((suffix, seg, slice(start, start + len(m["index"]))))
            start += len(m["index"])
            if "reference" in m:
                images.append(GrayscaleImage(name=f"registration_reference{suffix}", data=m["reference"],
                                             description="the image frames were registered to, (height, width)"))
        types |= {"ImageSegmentation", "PlaneSegmentation"}
        if images:
            ophys.add(Images(name="SummaryImages", description="images of the extraction", images=images))
            types |= {"Images", "GrayscaleImage"}
        if several:
            log.info("%d planes: one PlaneSegmentation and one RoiResponseSeries per trace and plane", len(masks))
    elif not any(m.startswith("ROI masks") for m in missing):
        missing.append("ROI masks: the session has no rois.npz (recorded by an older rtdecode); give --rois")

    containers: dict = {}

    def traces(container, name, key, unit, desc):
        """RoiResponseSeries in `container` (Fluorescence / DfOverF), one per plane (its columns of the
        activity vector); without ROI masks, a plain TimeSeries in the ophys module."""
        if not segs:
            ophys.add(TimeSeries(name=name, data=stream(key), unit=unit, timestamps=clock,
                                 description=desc + " (ROI masks unknown)"))
            return
        if container not in containers:
            containers[container] = (Fluorescence if container == "Fluorescence" else DfOverF)(name=container)
            ophys.add(containers[container])
            types.add(container)
        for suffix, seg, cols in segs:
            region = seg.create_roi_table_region(region=list(range(len(seg))), description=f"all ROIs of "
                                                 f"{seg.name}")
            containers[container].add_roi_response_series(RoiResponseSeries(
                name=name + suffix, data=stream(key, cols if several else None), rois=region, unit=unit,
                timestamps=clock, description=desc + (f"; the columns {cols.start}..{cols.stop - 1} of the "
                                                      "session's activity vector" if several else "")))
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
        shape = "(frame, plane, 2) in plane order" if len(chunks.specs["shifts"][0]) == 2 else "(frame, 2)"
        ophys.add(TimeSeries(name="MotionShifts", data=stream("shifts"), unit="pixels", timestamps=clock,
                             description=f"rigid registration shift (dy, dx) of each frame, {shape}"))
    else:
        missing.append("motion estimates: not recorded by this session (older rtdecode)")
