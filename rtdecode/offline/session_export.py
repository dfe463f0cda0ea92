"""A recorded session as a fit dataset: `rtdecode export SESSION` writes the Sensorium 2023 layout."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.offline.dataset import write_meta, write_trial
from rtdecode.outputs.session_reader import read_session

log = logging.getLogger(__name__)


def export_sensorium(session: str | Path, out: str | Path, tier: str = "train", rois: str | Path | None = None,
                     progress: bool = False) -> Path:
    """Write a recorded session in the Sensorium 2023 layout (docs/design.md 3.2), one trial per stimulus
    trial seen, so that `rtdecode fit` trains on a recorded calibration block.

    rois: a suite2p folder: the responses are the session's raw frames (outputs.raw_frames) extracted
    with these ROIs (rtdecode.offline.session_frames), not the activity recorded live; rows without a
    raw frame are left out. The way a new field of view's calibration block is fitted.

    Responses are the recorded activity vectors, video frames the stimulus images recorded with
    them (the stimulus stream must carry images); behaviour and pupil centre are not recorded and
    are written as zeros. RecordError if the session holds no frame with a known stimulus.
    """
    s = read_session(session)
    if s["damaged"]:
        raise RecordError(f"{session} is damaged ({'; '.join(s['damaged'])}); run 'rtdecode inspect' on it")
    a = s["arrays"]
    if "stimulus" not in a or not a.get("shown", np.zeros((0, 2))).size:
        raise RecordError(f"{session} holds no stimulus images (recorded by an older rtdecode?)")
    shown = a["shown"]
    activity = a["activity"]
    if rois is not None:
        from rtdecode.offline.session_frames import extract_session

        activity, kept = extract_session(session, rois, progress=progress)
        shown = np.where(kept[:, None], shown, -1)
    elif activity.shape[1] == 0:
        raise RecordError(f"{session} recorded raw frames but no activity (a new field of view): find its cells with "
                          f"'rtdecode rois {session} --out ROIS', then give --rois ROIS")
    known = shown[:, 0] >= 0
    if not known.any():
        raise RecordError(f"{session}: no recorded frame has a known stimulus; was the stimulus stream connected?")
    root = write_pairs(out, activity, shown, lambda rows: a["stimulus"][rows], tier)
    order = s["meta"].get("activity_order")
    if order is not None:  # several (plane, scan ROI) fields: their layout, as `rtdecode dataset` writes it
        (root / "meta" / "activity_order.json").write_text(json.dumps(order, indent=2) + "\n")
    log.info("exported %d trials (%d frames) of %s to %s", len(set(shown[known, 0].tolist())), int(known.sum()),
             session, root)
    return root


def write_pairs(out: str | Path, activity: np.ndarray, shown: np.ndarray, images, tier: str = "train") -> Path:
    """Write (activity, stimulus) pairs in the Sensorium 2023 layout, one trial per stimulus trial.

    activity: (T, N) per acquired frame (or volume); shown: (T, 2) (trial, stimulus frame) on screen
    then, (-1, -1) if none (such rows are left out); images(rows) -> (len(rows), H, W) stimulus images
    of those rows. Each trial's rows are sorted by stimulus frame; behaviour and pupil centre are
    zeros (not recorded). Trials are numbered 0, 1, ... in increasing stimulus-trial order."""
    root = Path(out)
    known = shown[:, 0] >= 0
    trials = sorted(set(shown[known, 0].tolist()))
    for k, trial in enumerate(trials):
        rows = np.flatnonzero(shown[:, 0] == trial)
        rows = rows[np.argsort(shown[rows, 1], kind="stable")]
        video = np.asarray(images(rows), np.float32)
        T = len(rows)
        write_trial(root, str(k), video, activity[rows].T, np.zeros((2, T)), np.zeros((2, T)))
    n = int(activity.shape[1])
    write_meta(root, [tier] * len(trials), n, np.zeros((n, 3)))
    return root
