"""A ScanImage TIFF recording plus a stimulus log -> a fit dataset (Sensorium 2023 layout, docs/design.md 3.2).

    rtdecode dataset TIFF --stimulus-log LOG.csv --movies DIR --rois SUITE2P_PLANE --out DATASET

For a calibration block recorded without rtdecode running (ScanImage saving TIFFs, the stimulus
program writing a log). The frames go through the live extraction chain (registration, ROI traces,
dF/F, deconvolution: the same stages and parameters as `rtdecode run`), so the decoder is fitted
on exactly the activity it will see live.

Inputs:
- TIFF: one ScanImage TIFF or a folder of them (read in name order: ScanImage's `_00001.tif`,
  `_00002.tif`, ...). Channels, planes and frame numbers come from the file's own metadata, read by
  tifffile (rtdecode.sources.scanimage.read_tiff_frames); `channel` and `planes` select as the rig
  file's `source.channel` / `source.planes` do (several planes: one suite2p folder each, the
  activity vector in plane order, then ROI order). Multi-ROI (mesoscope) TIFFs: each page's ROIs
  are split by the file's ROI group (`RoiGroups`, numbered from 1 in its order of enabled ROIs);
  `scan_rois` selects them as the rig file's `source.scan_rois` does: one suite2p folder per
  (plane, scan ROI), plane-major, and the activity vector plane-major, then scan ROI, then cell
  (written to `meta/activity_order.json` of the dataset, as session.json's `activity_order`).
- The stimulus log: a CSV file with the header line `frame,trial,stim_frame` and one line per
  acquired frame during which a stimulus frame was on screen, or a .npy integer array of shape
  (K, 3) with the same three columns:
    frame       ScanImage's frame number (`frameNumbers` in the TIFF, `frameNumberAcq` on the live
                stream), from 1; with several planes, the frame number of the volume's last plane;
    trial       the stimulus trial: the movie shown is `MOVIES/{trial}.npy`;
    stim_frame  the index of the movie frame on screen (0-based).
  Frames the log does not list (grey screen, inter-trial intervals) are extracted but not used.
- MOVIES: a folder of `{trial}.npy`, each (T, H, W) with values 0-255 (uint8 or float), the movie
  as shown (already downsampled to the decoder's frame size, e.g. 36 x 64).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rtdecode.errors import DatasetError
from rtdecode.offline.session_export import write_pairs

log = logging.getLogger(__name__)

LOG_COLUMNS = ("frame", "trial", "stim_frame")


def read_stimulus_log(path) -> np.ndarray:
    """(K, 3) int64 rows (frame, trial, stim_frame) of a stimulus log (.csv with a header, or .npy)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"stimulus log not found: {path}")
    if path.suffix.lower() == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        header = tuple(c.strip() for c in lines[0].split(",")) if lines else ()
        if header != LOG_COLUMNS:
            raise DatasetError(f"{path}: the first line must be '{','.join(LOG_COLUMNS)}', got {lines[:1]}")
        try:
            arr = np.array([[int(v) for v in ln.split(",")] for ln in lines[1:]], np.int64).reshape(-1, 3)
        except ValueError as exc:
            raise DatasetError(f"{path}: every line after the header must be three integers ({exc})") from None
    if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "iu":
        raise DatasetError(f"{path}: expected integer rows ({', '.join(LOG_COLUMNS)}), got {arr.dtype} {arr.shape}")
    arr = arr.astype(np.int64)
    if arr.size and (arr[:, 0].min() < 1 or arr[:, 1:].min() < 0):
        raise DatasetError(f"{path}: frame numbers start at 1, trial and stim_frame at 0")
    if len(np.unique(arr[:, 0])) != len(arr):
        raise DatasetError(f"{path}: a frame number is listed more than once")
    return arr


def tiff_files(path) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(list(p.glob("*.tif")) + list(p.glob("*.tiff")))
        if not files:
            raise DatasetError(f"{p}: no .tif files in this folder")
        return files
    if not p.is_file():
        raise DatasetError(f"TIFF not found: {p}")
    return [p]


def tiff_dataset(tiff, stimulus_log, movies, rois: list, out, *, channel: int = 1, planes: list[int] = (1,),
                 scan_rois: list[int] = (1,), fps: float = 30.0, crop=None, r: float = 0.7, tau_s: float = 0.7, tier: str = "train",
                 progress: bool = False) -> dict:
    """Extract the TIFF's frames of `channel` / `planes` / `scan_rois` with the live chain, pair each volume
    with the stimulus frame the log puts on screen, write the dataset to `out`. Returns counts."""
    from tqdm import tqdm

    from rtdecode.extract import build_chain, default_spec
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.planes import Planes
    from rtdecode.extract.rois import load_suite2p
    from rtdecode.sources.scanimage import read_tiff_frames

    planes, scan_rois = list(planes), list(scan_rois)
    sel = Planes(channel, planes, scan_rois=scan_rois)  # checks both lists
    if len(rois) != len(sel.fields):
        if scan_rois == [1]:
            raise DatasetError(f"{len(planes)} plane(s) {planes} need as many suite2p folders (--rois), "
                               f"got {len(rois)}")
        raise DatasetError(f"{len(planes)} plane(s) {planes} x {len(scan_rois)} scan ROI(s) {scan_rois} need "
                           f"{len(sel.fields)} suite2p folders (--rois, plane-major: plane {planes[0]} ROI "
                           f"{scan_rois[0]}, plane {planes[0]} ROI {scan_rois[-1]}, ...), got {len(rois)}")
    table = read_stimulus_log(stimulus_log)
    on_screen = {int(f): (int(t), int(s)) for f, t, s in table}
    movie_dir = Path(movies)
    clips = {}
    for trial in sorted(set(table[:, 1].tolist())):
        mpath = movie_dir / f"{trial}.npy"
        if not mpath.is_file():
            raise DatasetError(f"the stimulus log shows trial {trial}, but {mpath} is missing")
        clip = np.load(mpath, allow_pickle=False)
        if clip.ndim != 3:
            raise DatasetError(f"{mpath}: expected a (T, H, W) movie, got shape {clip.shape}")
        top = int(table[table[:, 1] == trial, 2].max())
        if top >= clip.shape[0]:
            raise DatasetError(f"the stimulus log shows frame {top} of trial {trial}; {mpath} has {clip.shape[0]}")
        clips[trial] = clip
    shapes = {c.shape[1:] for c in clips.values()}
    if len(shapes) > 1:
        raise DatasetError(f"the movies in {movie_dir} differ in frame size: {sorted(shapes)}")

    chains = None
    acts, shown, numbers = [], [], []
    ignored = {"other_channel": 0, "other_plane": 0, "other_roi": 0}
    files = tiff_files(tiff)
    bar = tqdm(desc="extract", unit="frame", disable=not progress)
    for f in files:
        for fr in read_tiff_frames(f):
            why = sel.ignore({"channel": fr.channel, "plane": fr.plane, "roi": fr.roi})
            if why is not None:
                ignored[why] = ignored.get(why, 0) + 1
                continue
            if chains is None:  # the chains take the frames' own type (ScanImage saves int16)
                chains = []
                for d in rois:
                    ref = suite2p_reference(d)
                    if ref is None:
                        raise DatasetError(f"{d}/ops.npy has no meanImg (the registration reference)")
                    chains.append(build_chain(default_spec(crop=None if crop is None else tuple(crop), r=r, tau_s=tau_s),
                                              load_suite2p(d), ref, fps=fps, frame_dtype=fr.image.dtype))
                sel = Planes(channel, planes, chains, scan_rois=scan_rois)
            act = sel.add(fr.plane, np.ascontiguousarray(fr.image), fr.roi)
            bar.update()
            if act is None:
                continue
            acts.append(act.copy())
            numbers.append(fr.frame_number)
            shown.append(on_screen.get(fr.frame_number, (-1, -1)))
    bar.close()
    if not acts:
        raise DatasetError(f"{tiff}: no frame of channel {channel}, planes {planes}, scan ROIs {scan_rois} "
                           f"(ignored: {ignored}); check --channel, --planes and --scan-rois against the file")
    shown_arr = np.array(shown, np.int64).reshape(-1, 2)
    used = int((shown_arr[:, 0] >= 0).sum())
    if used == 0:
        raise DatasetError(f"no frame number of {tiff} ({numbers[0]}..{numbers[-1]}) is in the stimulus log "
                           f"{stimulus_log}")
    activity = np.stack(acts)
    root = write_pairs(out, activity, shown_arr,
                       lambda rows: np.stack([clips[shown_arr[i, 0]][shown_arr[i, 1]] for i in rows]), tier)
    if len(sel.fields) > 1:  # the activity vector's layout, as session.json's activity_order
        (Path(root) / "meta" / "activity_order.json").write_text(json.dumps(sel.order(), indent=2) + "\n")
    missing = sorted(set(on_screen) - set(numbers))
    if missing:
        log.warning("%d frame(s) of the stimulus log are not in the TIFF (first: %d)", len(missing), missing[0])
    log.info("%s: %d volumes, %d paired with a stimulus frame, %d trials -> %s", tiff, len(acts), used,
             len(clips), root)
    return {"root": str(root), "volumes": len(acts), "paired": used, "trials": len(set(shown_arr[:, 0]) - {-1}),
            "neurons": int(activity.shape[1]), "ignored": ignored, "log_frames_missing": len(missing)}
