"""`rtdecode extract MOVIE --rois DIR --out DIR`: the live chain, run offline over a recording.

MOVIE: a TIFF (ScanImage / ImageJ, read with tifffile), a .npy (T, H, W) array, or a folder of
TIFFs such as the virtual rig's `twophoton/` (trial_0.tif, trial_1.tif, ... read in numeric order
as one continuous movie). --rois: a suite2p plane folder (stat.npy, iscell.npy, ops.npy); its
ops['meanImg'] is the registration reference when present, else one is built from the first
frames. Writes F.npy, Fneu.npy, dff.npy, activity.npy (neurons x frames float32), shifts.npy
(frames x 2, (dy, dx)), iscell_index.npy (each row's index in stat.npy) and extract.json.
"""

from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path

import numpy as np

from rtdecode.errors import ConfigError, RoiError, StageError
from rtdecode.extract import build_chain, default_spec, extract_movie
from rtdecode.extract.register import reference_from
from rtdecode.extract.rois import load_suite2p

log = logging.getLogger(__name__)


def load_movie(path) -> np.ndarray:
    """(T, H, W) uint16 frames from a TIFF, a .npy or a folder of TIFFs. Raises ConfigError."""
    p = Path(path)
    if p.is_dir():
        files = sorted(list(p.glob("*.tif")) + list(p.glob("*.tiff")),
                       key=lambda f: [int(s) if s.isdigit() else s for s in re.split(r"(\d+)", f.name)])
        if not files:
            raise ConfigError(f"{p}: no .tif files in this folder")
        return np.concatenate([load_movie(f) for f in files])
    if not p.is_file():
        raise ConfigError(f"{p}: no such movie file")
    if p.suffix.lower() == ".npy":
        arr = np.load(p, allow_pickle=False, mmap_mode="r")
    elif p.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(p)
    else:
        raise ConfigError(f"{p}: unknown movie format (use .tif, .tiff, .npy or a folder of TIFFs)")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise StageError(f"{p}: expected frames (T, H, W), got shape {arr.shape}; one plane and "
                         "channel per file")
    if arr.dtype == np.int16:  # ScanImage stores signed int16: negative values are offset noise
        arr = np.clip(arr, 0, None).astype(np.uint16)
    elif arr.dtype != np.uint16:
        if not np.issubdtype(arr.dtype, np.number):
            raise StageError(f"{p}: frames must be numeric, got {arr.dtype}")
        arr = np.clip(np.rint(arr), 0, 65535).astype(np.uint16)
    return np.ascontiguousarray(arr)


def suite2p_reference(folder) -> np.ndarray | None:
    ops = Path(folder) / "ops.npy"
    if not ops.is_file():
        return None
    from rtdecode.extract import safe_npy

    arr = safe_npy.load(ops, error=RoiError)  # suite2p's pickled format, restricted to plain types
    d = arr.item() if arr.dtype.hasobject and arr.size == 1 else None
    if not isinstance(d, dict):
        raise RoiError(f"{ops} does not hold suite2p's ops dictionary")
    return None if d.get("meanImg") is None else np.asarray(d["meanImg"], np.float32)


def extract_to_folder(movie, rois_dir, out_dir, *, fps: float = 30.0, r: float = 0.7,
                      tau_s: float = 0.7, crop=None, backend: str = "fast") -> dict:
    """Run the live chain over `movie` (path or (T, H, W) array) and write the outputs; returns
    the summary written to extract.json."""
    frames = load_movie(movie) if not isinstance(movie, np.ndarray) else movie
    rois = load_suite2p(rois_dir, frame_shape=None if (Path(rois_dir) / "ops.npy").is_file()
                        else frames.shape[1:])
    if tuple(frames.shape[1:]) != tuple(rois.frame_shape):
        raise StageError(f"movie frames are {frames.shape[1:]} but the ROIs are on a "
                         f"{tuple(rois.frame_shape)} frame")
    ref = suite2p_reference(rois_dir)
    ref_src = "ops.npy meanImg"
    if ref is None:
        ref = reference_from(frames[: min(100, len(frames))], crop=crop)
        ref_src = "first frames"
    chain = build_chain(default_spec(r=r, tau_s=tau_s, crop=crop), rois, ref, fps=fps, backend=backend)
    t = time.perf_counter()
    chain.warm_up()
    warm = time.perf_counter() - t
    t = time.perf_counter()
    res = extract_movie(chain, frames)
    dt = time.perf_counter() - t
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for k in ("F", "Fneu", "dff", "activity", "shifts"):
        np.save(out / f"{k}.npy", res[k], allow_pickle=False)
    np.save(out / "roi_index.npy", np.asarray(rois.index), allow_pickle=False)
    summary = {"frames": len(frames), "rois": int(rois.n), "frame_shape": list(rois.frame_shape),
               "reference": ref_src, "fps": fps, "r": r, "tau_s": tau_s, "backend": backend,
               "warm_up_s": warm, "ms_per_frame": 1e3 * dt / max(1, len(frames)),
               "rejected_nonfinite": int(sum(getattr(s, "rejected", 0) for s in chain.stages))}
    (out / "extract.json").write_text(json.dumps(summary, indent=2))
    log.info("extracted %d frames x %d ROIs into %s (%.2f ms/frame)", len(frames), rois.n, out,
             summary["ms_per_frame"])
    return summary


def cmd_extract(args) -> int:
    extract_to_folder(args.movie, args.rois, args.out, fps=args.fps, r=args.r, tau_s=args.tau,
                      crop=None if args.crop is None else tuple(args.crop), backend=args.backend)
    return 0
