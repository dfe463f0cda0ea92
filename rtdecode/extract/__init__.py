"""The extraction stages: raw frame -> registered frame -> ROI traces -> dF/F -> activity.

`build_chain(spec, rois, reference)` (stages.py: the stage registry; a spec lists the stages and
their options, None the default chain) assembles the two-photon path, live and offline;
`extract_movie` runs a chain over a movie. The ephys stages (band-pass -> common reference -> threshold crossings -> bin counts)
are in `ephys_stages.py`, registered in the same registry (modality "ephys"; `build_ephys_stages(n, block, spec)`, `SampleChain`).
"""

from __future__ import annotations

import logging

import numpy as np

from rtdecode.errors import StageError
from rtdecode.extract.deconv import Deconvolve, estimate_noise
from rtdecode.extract.dff import DeltaF
from rtdecode.extract.register import Register, reference_from
from rtdecode.extract.rois import Rois, cap_neuropil, from_footprints, load_suite2p
from rtdecode.extract.stages import DEFAULT_STAGES, STAGES, build_chain, default_spec, parse_spec
from rtdecode.extract.traces import Traces
from rtdecode.stage import Chain

__all__ = [
    "DEFAULT_STAGES", "STAGES", "Deconvolve", "DeltaF", "Register", "Rois", "Traces", "build_chain", "cap_neuropil",
    "default_spec", "estimate_noise", "extract_movie", "from_footprints", "load_suite2p", "parse_spec",
    "reference_from",
]

log = logging.getLogger(__name__)


def extract_movie(chain: Chain, frames, reset: bool = True) -> dict:
    """Run `frames` ((T, H, W) array or a sequence of (H, W) frames) one by one through `chain`.

    Returns float32 arrays 'F', 'Fneu', 'dff', 'activity' of shape (n, T) and 'shifts' (T, 2)
    (dy, dx): the chain's taps (rtdecode.stage.Stage.taps) and its last stage's output. reset: forget the chain's
    state first, so the result does not depend on what ran before.
    """
    taps = chain.taps()
    missing = [k for k in ("F", "Fneu", "dff", "shifts") if k not in taps]
    if missing:
        raise StageError(f"extract_movie: no stage of the chain exposes {', '.join(missing)}")
    T, n = len(frames), taps["F"][1][0]
    out = {k: np.empty((n, T), np.float32) for k in ("F", "Fneu", "dff", "activity")}
    out["shifts"] = np.empty((T, 2), np.float32)
    get = {k: taps[k][0] for k in ("F", "Fneu", "dff", "shifts")}
    if reset:
        chain.reset()
    for t in range(T):
        act = chain.process(frames[t])
        out["activity"][:, t] = act
        out["F"][:, t] = get["F"]()
        out["Fneu"][:, t] = get["Fneu"]()
        out["dff"][:, t] = get["dff"]()
        out["shifts"][t] = get["shifts"]()
    log.debug("extracted %d frames of %d ROIs", T, n)
    return out

