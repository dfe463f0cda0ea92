"""The raw frames a session recorded (rig file `outputs.raw_frames`), extracted offline with ROIs found
afterwards: the calibration block of a new field of view, made a fit dataset without a second
acquisition (`rtdecode fit SESSION --rois DIR`, `rtdecode export SESSION --rois DIR --out DS`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError, RoiError

log = logging.getLogger(__name__)


def extract_session(session, rois_dir, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Run the live two-photon chain, with the session's own rig-file settings (crop, max_shift,
    neuropil_r, tau_s, fps, frame_dtype) and the ROIs of `rois_dir` (a suite2p folder; its
    ops['meanImg'] is the registration reference), over the raw frames the session kept, in order.

    Returns activity (T, n) float32 for every recorded row (T: the session's rows; NaN where no raw
    frame was kept) and kept (T,) bool. RecordError if the session is damaged or has no raw frames;
    RoiError if the ROIs are not on its frames."""
    from tqdm import tqdm

    from rtdecode.extract import build_chain, default_spec
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.rois import load_suite2p
    from rtdecode.offline.session_chunks import SessionChunks

    folder = Path(session)
    chunks = SessionChunks(folder)
    if chunks.problems:
        raise RecordError(f"{folder} is damaged ({'; '.join(chunks.problems[:3])}); run 'rtdecode inspect' on it")
    if "raw" not in chunks.specs:
        raise RecordError(f"{folder} holds no raw frames (record the block with outputs.raw_frames in the rig file); "
                          "--rois re-extracts a session from its raw frames")
    tp = ((chunks.scan["meta"].get("config") or {}).get("extraction") or {}).get("two_photon") or {}
    shape, dtype = chunks.specs["raw"]
    rois = load_suite2p(rois_dir)
    if tuple(rois.frame_shape) != tuple(shape):
        raise RoiError(f"{rois_dir}: the ROIs are on a {tuple(rois.frame_shape)} frame, the session's raw frames are "
                       f"{tuple(shape)}; are they from this field of view?")
    reference = suite2p_reference(rois_dir)
    if reference is None:
        raise RoiError(f"{rois_dir}/ops.npy has no meanImg (the registration reference)")
    spec = chunks.scan["meta"].get("extraction_spec")  # the chain the live session would have run
    if spec is None:  # recorded before it was kept: the rig file's keys
        spec = default_spec(crop=None if tp.get("crop") is None else tuple(tp["crop"]), downsample=tp.get("downsample"),
                            max_shift=tp.get("max_shift"), r=float(tp.get("neuropil_r", 0.7)),
                            tau_s=float(tp.get("tau_s", 0.7)))
    chain = build_chain(spec, rois, reference, fps=float(tp.get("fps", 30.0)), frame_dtype=dtype)
    chain.warm_up()
    chain.reset()
    activity = np.full((chunks.total, rois.n), np.nan, np.float32)
    kept = np.zeros(chunks.total, bool)
    row = 0
    bar = tqdm(total=int(chunks.total), desc="extract", unit="frame", disable=not progress)
    for raw, saved in zip(chunks.iter_key("raw"), chunks.iter_key("raw_saved")):
        for i in range(len(raw)):
            if saved[i]:
                activity[row + i] = chain.process(raw[i])
                kept[row + i] = True
        row += len(raw)
        bar.update(len(raw))
    bar.close()
    if not kept.any():
        raise RecordError(f"{folder}: no raw frame was kept (raw_saved is false in every row)")
    log.info("extracted %d raw frames of %s with %d ROIs from %s", int(kept.sum()), folder, rois.n, rois_dir)
    return activity, kept
