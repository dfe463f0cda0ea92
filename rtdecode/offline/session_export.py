"""A recorded session as a fit dataset: `rtdecode export SESSION` writes the Sensorium 2023 layout."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.offline.dataset import write_meta, write_trial
from rtdecode.outputs.record import read_session

log = logging.getLogger(__name__)


def export_sensorium(session: str | Path, out: str | Path, tier: str = "train") -> Path:
    """Write a recorded session in the Sensorium 2023 layout (DESIGN 3.2), one trial per stimulus
    trial seen, so that `rtdecode fit` trains on a recorded calibration block.

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
    known = shown[:, 0] >= 0
    if not known.any():
        raise RecordError(f"{session}: no recorded frame has a known stimulus; was the stimulus stream connected?")
    root = Path(out)
    trials = sorted(set(shown[known, 0].tolist()))
    for k, trial in enumerate(trials):
        rows = np.flatnonzero(shown[:, 0] == trial)
        rows = rows[np.argsort(shown[rows, 1], kind="stable")]
        video = a["stimulus"][rows].astype(np.float32)
        T = len(rows)
        write_trial(root, str(k), video, a["activity"][rows].T, np.zeros((2, T)), np.zeros((2, T)))
    n = int(s["meta"]["neurons"])
    write_meta(root, [tier] * len(trials), n, np.zeros((n, 3)))
    log.info("exported %d trials (%d frames) of %s to %s", len(trials), int(known.sum()), session, root)
    return root
