"""The extraction stages: raw frame -> registered frame -> ROI traces -> dF/F -> activity.

`build_chain` assembles the live two-photon path; `extract_movie` re-runs the same chain offline
over a movie. The ephys stages (band-pass -> common reference -> threshold crossings -> bin counts)
are in `ephys_stages.py` (`build_ephys_stages`, `SampleChain`).
"""

from __future__ import annotations

import logging

import numpy as np

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract.deconv import Deconvolve, estimate_noise
from rtdecode.extract.dff import DeltaF
from rtdecode.extract.kernels import warm_up_kernels
from rtdecode.extract.register import Register, reference_from
from rtdecode.extract.rois import Rois, cap_neuropil, from_footprints, load_suite2p
from rtdecode.extract.traces import Traces
from rtdecode.stage import Chain

__all__ = [
    "Deconvolve", "DeltaF", "Register", "Rois", "Traces", "build_chain", "cap_neuropil", "estimate_noise",
    "extract_movie", "from_footprints", "load_suite2p", "reference_from",
]

log = logging.getLogger(__name__)


def build_chain(
    rois: Rois,
    reference: np.ndarray,
    fps: float = 30.0,
    *,
    crop: tuple[int, int] | None = None,
    downsample: int | None = None,
    max_shift: int | None = None,
    r: float = 0.7,
    max_neuropil_px: int | None = None,
    tau_s: float = 0.7,
    tau_down_s: float = 2.0,
    tau_up_s: float = 60.0,
    baseline: np.ndarray | None = None,
    min_baseline: float = 1.0,
    k_sigma: float = 2.0,
    noise: np.ndarray | None = None,
    noise_tau_s: float = 30.0,
    deconv: str = "threshold",
    lag: int = 3,
    backend: str = "fast",
    frame_dtype=np.uint16,
) -> Chain:
    """uint16 (H, W) raw frame -> float32 (n,) activity: Register, Traces, DeltaF, Deconvolve.

    frame_dtype: the raw frames' type, uint16 (default) or int16 (what ScanImage acquires).
    reference: (H, W) image matching `rois.frame_shape` (the ROIs must be in its coordinates).
    Options go to the stage of the same parameter: crop (None: register.DEFAULT_CROP), downsample,
    max_shift (Register); r (Traces);
    max_neuropil_px: each ROI's neuropil annulus is sampled down to at most this many pixels for
    the live product (`cap_neuropil`: evenly spaced, deterministic; None uses every pixel of
    `rois.neuropil`, the default). 64 brings the 1,000-ROI 512x512 product to 0.17 ms p50 (0.36 ms
    uncapped; benchmarks/results/bench_extract.json, `rtdecode bench extract`) but costs some
    accuracy on the virtual rig (benchmarks/results/rig_accuracy.json), so it is opt-in;
    tau_down_s, tau_up_s, baseline, min_baseline (DeltaF); tau_s, k_sigma, noise, noise_tau_s
    (Deconvolve; tau_s is the indicator's decay time, s); deconv, lag: Deconvolve's method and lag
    ("threshold": no delay; "oasis": online OASIS, more accurate, activity `lag` frames late).
    backend: "fast" (default: the fastest measured implementation of each stage: Numba kernels for
    Register, DeltaF, Deconvolve; scipy's CSR kernel into a preallocated buffer for Traces) or
    "numpy" (the straightforward NumPy/SciPy reference of every stage).
    Call `.warm_up()` on the result before acquisition: it compiles every Numba kernel.
    """
    if backend not in ("fast", "numpy"):
        raise ConfigError(f"build_chain: backend must be 'fast' or 'numpy', got {backend!r}")
    fast = backend == "fast"
    ref = np.asarray(reference)
    if ref.shape != tuple(rois.frame_shape):
        raise StageError(f"reference is {ref.shape} but the ROIs are on a {tuple(rois.frame_shape)} frame; "
                         "use the reference of the same field of view")
    stages = [
        Register(ref, crop=crop, max_shift=max_shift, downsample=downsample,
                 backend="numba" if fast else "numpy", dtype=frame_dtype),
        Traces(rois if max_neuropil_px is None else cap_neuropil(rois, max_neuropil_px), r=r,
               backend="scipy" if fast else "numpy"),
        DeltaF(rois.n, fps=fps, tau_down_s=tau_down_s, tau_up_s=tau_up_s, baseline=baseline,
               min_baseline=min_baseline, backend="numba" if fast else "numpy"),
        Deconvolve(rois.n, fps=fps, tau_s=tau_s, k_sigma=k_sigma, noise=noise, noise_tau_s=noise_tau_s,
                   method=deconv, lag=lag, backend="numba" if fast else "numpy"),
    ]
    if fast:
        warm_up_kernels()  # compile / load every kernel now, not on the first frame
    return Chain(stages)


def extract_movie(chain: Chain, frames, reset: bool = True) -> dict:
    """Run `frames` ((T, H, W) array or a sequence of (H, W) frames) one by one through `chain`.

    Returns float32 arrays 'F', 'Fneu', 'dff', 'activity' of shape (n, T) and 'shifts' (T, 2)
    (dy, dx) from the chain's Register, Traces, DeltaF and last stage. reset: forget the chain's
    state first, so the result does not depend on what ran before.
    """
    reg = _find(chain, Register)
    traces = _find(chain, Traces)
    dff_i = next((i for i, s in enumerate(chain.stages) if isinstance(s, DeltaF)), None)
    if dff_i is None:
        raise StageError("extract_movie: the chain has no DeltaF stage")
    T, n = len(frames), traces.n
    out = {k: np.empty((n, T), np.float32) for k in ("F", "Fneu", "dff", "activity")}
    out["shifts"] = np.empty((T, 2), np.float32)
    if reset:
        chain.reset()
    for t in range(T):
        act = chain.process(frames[t])
        out["activity"][:, t] = act
        out["F"][:, t] = traces.F
        out["Fneu"][:, t] = traces.Fneu
        out["dff"][:, t] = chain.buffers[dff_i]
        out["shifts"][t] = reg.last_shift
    log.debug("extracted %d frames of %d ROIs", T, n)
    return out


def _find(chain: Chain, kind: type):
    for s in chain.stages:
        if isinstance(s, kind):
            return s
    raise StageError(f"extract_movie: the chain has no {kind.__name__} stage")
