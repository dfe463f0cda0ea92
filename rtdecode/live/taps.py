"""What of the extraction chain is recorded with each frame: the taps (F, Fneu, dF/F, registration
shifts) of one chain or of a volume's planes, and the ROI masks (rois.npz) written into a session."""

from __future__ import annotations

import numpy as np

from rtdecode.extract.planes import Planes
from rtdecode.outputs.record import Recorder, rois_npz
from rtdecode.stage import Chain


def extraction_taps(chain: Chain | None) -> dict:
    """The chain's intermediate arrays worth recording with each frame, as its stages declare them
    (rtdecode.stage.Stage.taps): {name: (getter, shape, dtype)}, e.g. 'F', 'Fneu' (traces, (n,)),
    'dff' (n,) and 'shifts' (register's (dy, dx), px); empty for a chain without such stages (ephys)."""
    return {} if chain is None else chain.taps()


def plane_taps(planes: Planes) -> dict:
    """`extraction_taps` of a volume: 'F', 'Fneu', 'dff' concatenated over the fields (planes, or
    (plane, scan ROI) plane-major: the activity vector's order), 'shifts' (fields, 2)."""
    per = [extraction_taps(c) for c in planes.chains]
    taps = {}
    for k in ("F", "Fneu", "dff"):
        if all(k in t for t in per):
            getters = [t[k][0] for t in per]
            taps[k] = (lambda g=getters: np.concatenate([f() for f in g]), (planes.n,), "float32")
    if all("shifts" in t for t in per):
        getters = [t["shifts"][0] for t in per]
        taps["shifts"] = (lambda g=getters: np.stack([f() for f in g]), (len(per), 2), "float32")
    return taps


def record_planes(recorder: Recorder, planes: Planes) -> None:
    """One chain: rois.npz as `record_extraction`; several fields: rois_plane{p}.npz per plane, or
    rois_plane{p}_roi{r}.npz per (plane, scan ROI) in a multi-ROI scan (the order is in session.json's
    `activity_order`)."""
    if len(planes.chains) == 1:
        record_extraction(recorder, planes.chains[0])
        return
    for name, chain in zip(planes.names(), planes.chains):
        traces, reg = chain.find("rois"), chain.find("reference")
        if traces is not None:
            recorder.attach(f"rois_{name}", rois_npz(traces.rois, None if reg is None else reg.reference))


def record_extraction(recorder: Recorder, chain: Chain) -> dict:
    """Write the chain's masks into the session as rois.npz (ROI and neuropil weights as CSR parts
    `roi_indptr/indices/weights`, `neuropil_...` over the flattened (H, W) frame, `frame_shape`,
    `index`, and the registration `reference` image) from the stages that hold `rois` / `reference`
    (traces, register); returns the arrays written ({} for ephys)."""
    traces, reg = chain.find("rois"), chain.find("reference")
    if traces is None:
        return {}
    arrays = rois_npz(traces.rois, None if reg is None else reg.reference)
    recorder.attach("rois", arrays)
    return arrays


def recorder_extras(chain: Chain | None, planes: Planes | None = None) -> dict:
    """{name: (shape, dtype)} of `extraction_taps(chain)` (or `plane_taps(planes)` with per-plane
    chains), for Recorder(extras=...)."""
    taps = extraction_taps(chain) if planes is None or planes.chains is None else plane_taps(planes)
    return {k: (shape, dt) for k, (_, shape, dt) in taps.items()}
