"""`rtdecode rois MOVIE... --out DIR`: find the cells of a new field of view with suite2p.

suite2p's own pipeline (registration, functional detection, its extraction and its cell classifier;
the `rois` extra: pip install -e '.[rois]') runs on one plane of a calibration recording: ScanImage
TIFFs (a file or a folder; channel and plane from their metadata), a (T, H, W) .npy, or a session
folder that `rtdecode run --record` wrote with `outputs.raw_frames`. Written per plane, in the layout
`extraction.two_photon.rois` reads (rtdecode.extract.rois.load_suite2p):

  stat.npy    (n,) dicts: ypix, xpix (int32 pixel indices), lam (float32 weights), med, npix and
              suite2p's shape and activity statistics (plain numbers: safe_npy reads them)
  iscell.npy  (n, 2) float: column 0 = 1 where the classifier's probability >= --threshold, column 1
              that probability (suite2p's own layout)
  ops.npy     Ly, Lx, meanImg (the registered mean image: the live registration reference), meanImgE,
              refImg, max_proj, Vcorr, fs, tau, diameter, threshold, suite2p version, frames
  rois.json   what ran: inputs, frames, ROIs found and kept, threshold, seconds per step

One plane: DIR holds the files; several (--planes): DIR/plane0, DIR/plane1, ... in --planes order.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from rtdecode.errors import DatasetError, DependencyError, RoiError

log = logging.getLogger(__name__)

EXTRA = "pip install -e '.[rois]'"
STAT_ARRAYS = ("ypix", "xpix", "lam")  # per-pixel arrays kept from suite2p's stat
STAT_NUMBERS = ("npix", "radius", "aspect_ratio", "compact", "footprint", "skew", "std", "snr", "npix_norm")


def import_suite2p():
    """The suite2p module, imported on first use; DependencyError says how to install it."""
    try:
        import torch
    except ImportError as exc:
        raise DependencyError(f"rtdecode rois needs torch and suite2p ({exc}); install the extra: {EXTRA}") from None
    _declare_torchvision_ops(torch)
    logging.getLogger("cellpose").setLevel(logging.ERROR)  # optional cellpose models it lacks: not used here
    try:
        import suite2p
    except ImportError as exc:
        raise DependencyError(f"rtdecode rois needs suite2p ({exc}); install the extra: {EXTRA}") from None
    return suite2p


def _declare_torchvision_ops(torch) -> None:
    """torchvision's PyPI wheels link CUDA torch; beside the CPU build of torch its C ops do not load,
    and torchvision (0.28) then fails at import on register_fake('torchvision::nms'). suite2p imports
    torchvision through cellpose for image transforms only: declaring the two schemas (no kernels)
    lets the import finish. Nothing here runs nms."""
    try:
        import torchvision.extension  # noqa: F401
        return
    except (ImportError, RuntimeError, OSError):
        pass
    for name in ("torchvision", "torchvision.extension", "torchvision._meta_registrations"):
        sys.modules.pop(name, None)
    if not hasattr(_declare_torchvision_ops, "lib"):
        lib = torch.library.Library("torchvision", "FRAGMENT")
        for op in ("nms", "qnms"):
            try:
                lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
            except RuntimeError:  # already defined (torchvision's own ops loaded after all)
                pass
        _declare_torchvision_ops.lib = lib  # keep the library alive: its definitions go with it
    log.debug("torchvision's C ops did not load; declared torchvision::nms / qnms for the import")


# ------------------------------------------------------------------------------------------------
def read_frames(inputs: list, channel: int = 1, plane: int = 1) -> tuple[np.ndarray, dict]:
    """(T, H, W) int16 frames of one channel and plane, from every input in order, and where they came
    from. Inputs: TIFFs or folders of TIFFs, .npy (T, H, W), or session folders with raw frames.
    DatasetError if an input is missing, unreadable, holds no such frame, or the frame sizes differ."""
    if not inputs:
        raise DatasetError("give at least one movie: a TIFF, a folder of TIFFs, a .npy or a recorded session")
    parts, sources = [], []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise DatasetError(f"{p}: no such file or folder")
        if (p / "session.json").is_file():
            a = session_frames(p)
            kind = "session"
        elif p.is_dir() or p.suffix.lower() in (".tif", ".tiff"):
            a = tiff_frames(p, channel, plane)
            kind = "tiff"
        elif p.suffix.lower() == ".npy" and p.is_file():
            a = np.load(p, allow_pickle=False)
            if a.ndim != 3:
                raise DatasetError(f"{p}: expected frames (T, H, W), got shape {a.shape}")
            kind = "npy"
        else:
            raise DatasetError(f"{p}: not a TIFF, a folder of TIFFs, a .npy or a session folder (session.json)")
        if parts and a.shape[1:] != parts[0].shape[1:]:
            raise DatasetError(f"{p}: frames are {a.shape[1:]}, the inputs before it {parts[0].shape[1:]}; one field "
                               "of view per run")
        parts.append(_as_int16(a, p))
        sources.append({"path": str(p), "kind": kind, "frames": int(len(a))})
    frames = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return frames, {"inputs": sources, "channel": channel, "plane": plane}


def session_frames(folder: Path) -> np.ndarray:
    """The raw frames a session recorded (rig file `outputs.raw_frames`), (T, H, W), rows whose frame was
    kept only; DatasetError if it recorded none. Checked against its manifest (damaged chunks are left
    out with a warning, as `rtdecode inspect` reports them)."""
    from rtdecode.offline.session_chunks import SessionChunks

    chunks = SessionChunks(folder)
    for problem in chunks.problems:
        log.warning("%s: %s", folder, problem)
    if "raw" not in chunks.specs:
        raise DatasetError(f"{folder}: the session holds no raw frames; record the calibration block with "
                           "outputs.raw_frames in the rig file (docs/rig-file.md), or give ScanImage's TIFFs")
    frames = np.empty((chunks.total,) + chunks.specs["raw"][0], chunks.specs["raw"][1])  # filled in place: one copy
    k = 0
    for raw, saved in zip(chunks.iter_key("raw"), chunks.iter_key("raw_saved")):
        n = int(saved.sum())
        frames[k:k + n] = raw[saved]
        k += n
    frames = frames[:k]
    if not len(frames):
        raise DatasetError(f"{folder}: no raw frame was kept (raw_saved is false in every row)")
    return frames


def tiff_frames(path: Path, channel: int, plane: int) -> np.ndarray:
    """The frames of `channel` and `plane` in a TIFF or a folder of TIFFs (name order), (T, H, W)."""
    from rtdecode.offline.tiff_dataset import tiff_files
    from rtdecode.sources.scanimage import read_tiff_frames

    out, seen = [], set()
    for f in tiff_files(path):
        for fr in read_tiff_frames(f):
            seen.add((fr.channel, fr.plane))
            if fr.channel == channel and fr.plane == plane and fr.roi == 1:
                out.append(np.asarray(fr.image))
    if not out:
        raise DatasetError(f"{path}: no frame of channel {channel}, plane {plane} (the file holds (channel, plane) "
                           f"{sorted(seen)}); check --channel and --planes")
    return np.stack(out)


def _as_int16(a: np.ndarray, source) -> np.ndarray:
    """Frames as int16 (suite2p's binary type): uint16 above 32767 is clipped (ScanImage's data are
    int16 already; the virtual rig's 12-bit)."""
    if not np.issubdtype(a.dtype, np.number):
        raise DatasetError(f"{source}: frames must be numeric, got {a.dtype}")
    if a.dtype == np.int16:
        return np.ascontiguousarray(a)
    if a.dtype == np.uint16:  # one allocation (a calibration block is GBs)
        out = np.empty(a.shape, np.int16)
        np.minimum(a, 32767, out=out, casting="unsafe")
        return out
    if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
        raise DatasetError(f"{source}: frames hold NaN or infinite values")
    return np.clip(np.rint(a) if np.issubdtype(a.dtype, np.floating) else a, -32768, 32767).astype(np.int16)


# ------------------------------------------------------------------------------------------------
def settings_for(suite2p, fps: float, tau_s: float, diameter: float | None, nonrigid: bool) -> dict:
    """suite2p's default settings with the recording's rate, indicator and cell size, on the CPU
    (registration metrics, which only draw plots in suite2p's GUI, off)."""
    s = suite2p.default_settings()
    s["fs"], s["tau"] = float(fps), float(tau_s)
    if diameter is not None:
        s["diameter"] = [float(diameter), float(diameter)]
    s["torch_device"] = "cpu"
    s["run"]["do_regmetrics"] = False
    s["registration"]["nonrigid"] = bool(nonrigid)
    return s


def detect(frames: np.ndarray, out, *, fps: float = 30.0, tau_s: float = 0.7, diameter: float | None = None,
           threshold: float = 0.5, nonrigid: bool = True, progress: bool = False, about: dict | None = None) -> dict:
    """Run suite2p on frames (T, H, W) of one plane (int16 frames are registered in place: pass a copy
    to keep them) and write stat.npy, iscell.npy, ops.npy, rois.json to
    `out`; returns the summary (rois.json). threshold: classifier probability (0-1) from which an ROI is
    a cell (iscell column 0). RoiError if suite2p finds no ROI, or none reaches the threshold."""
    if not 0.0 <= threshold <= 1.0:
        raise RoiError(f"--threshold is a probability between 0 and 1, got {threshold}")
    if frames.ndim != 3 or min(frames.shape) < 1:
        raise DatasetError(f"expected frames (T, H, W), got shape {frames.shape}")
    T, H, W = frames.shape
    if frames.dtype != np.int16 or not frames.flags.c_contiguous or not frames.flags.writeable:
        frames = np.array(frames, np.int16)  # suite2p registers int16 frames in place
    if T < 100:
        raise DatasetError(f"{T} frames: suite2p needs a few hundred at least (a minute of imaging is a start)")
    suite2p = import_suite2p()
    import torch

    settings = settings_for(suite2p, fps, tau_s, diameter, nonrigid)
    if progress:
        logging.getLogger("suite2p").setLevel(logging.INFO)  # its steps and progress bars, on stderr
    log.info("suite2p %s on %d frames of %dx%d", suite2p.version, T, H, W)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtdecode-suite2p-") as work, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*", category=UserWarning)  # torch's beta notes
        res = suite2p.pipeline(work, frames, settings=settings, device=torch.device("cpu"))
    seconds = time.perf_counter() - t0
    reg, detect_out, stat, iscell = res[0], res[1], res[2], res[8]
    if stat is None or len(stat) == 0:
        raise RoiError(f"suite2p found no ROI in {T} frames; is the field of view in focus, the movie long enough, "
                       "the --diameter right?")
    prob = np.asarray(iscell, np.float64)[:, 1]
    cell = prob >= threshold
    if not cell.any():
        raise RoiError(f"suite2p found {len(stat)} ROIs but its classifier gives none a probability >= {threshold} "
                       f"(highest {prob.max():.2f}); lower --threshold")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "stat.npy", plain_stat(stat), allow_pickle=True)
    np.save(out / "iscell.npy", np.column_stack([cell.astype(np.float64), prob]), allow_pickle=False)
    ops = {"Ly": H, "Lx": W, "nframes": T, "fs": float(fps), "tau": float(tau_s),
           "diameter": [float(d) for d in np.ravel(settings["diameter"])], "threshold": float(threshold),
           "nonrigid": bool(nonrigid), "suite2p_version": str(suite2p.version)}
    for key in ("meanImg", "meanImgE", "refImg"):
        if reg.get(key) is not None:
            ops[key] = np.asarray(reg[key], np.float32)
    for key in ("max_proj", "Vcorr"):
        if detect_out is not None and detect_out.get(key) is not None:
            ops[key] = np.asarray(detect_out[key], np.float32)
    np.save(out / "ops.npy", np.array(ops, dtype=object), allow_pickle=True)
    summary = {**(about or {}), "frames": T, "frame_shape": [H, W], "rois_found": int(len(stat)),
               "cells": int(cell.sum()), "threshold": float(threshold), "fps": float(fps), "tau_s": float(tau_s),
               "diameter": ops["diameter"], "nonrigid": bool(nonrigid), "suite2p_version": str(suite2p.version),
               "seconds": round(seconds, 1),
               "seconds_per_step": {k: round(float(v), 1) for k, v in res[11].items()}}
    (out / "rois.json").write_text(json.dumps(summary, indent=2) + "\n")
    from rtdecode.extract.rois import load_suite2p

    load_suite2p(out)  # what the rig file will read: fail here, not at the start of a session
    log.info("%d ROIs, %d cells (p >= %g) in %s", len(stat), cell.sum(), threshold, out)
    return summary


def plain_stat(stat) -> np.ndarray:
    """suite2p's stat as an object array of plain dicts (arrays, ints, floats, lists): what
    rtdecode.extract.safe_npy admits, without the per-ROI arrays the live path never reads."""
    out = np.empty(len(stat), dtype=object)
    for i, s in enumerate(stat):
        d = {"ypix": np.asarray(s["ypix"], np.int32), "xpix": np.asarray(s["xpix"], np.int32),
             "lam": np.asarray(s["lam"], np.float32), "med": [int(v) for v in s["med"]]}
        for k in STAT_NUMBERS:
            if k in s and np.ndim(s[k]) == 0:
                d[k] = int(s[k]) if k == "npix" else float(s[k])
        out[i] = d
    return out


def detect_planes(inputs: list, out, *, channel: int = 1, planes=(1,), progress: bool = False, **kwargs) -> list[dict]:
    """`detect` per plane of `planes` (one: into `out`; several: out/plane0, out/plane1, ...)."""
    planes = list(planes)
    if len(set(planes)) != len(planes):
        raise DatasetError(f"--planes lists a plane twice: {planes}")
    results = []
    for k, plane in enumerate(planes):
        target = Path(out) if len(planes) == 1 else Path(out) / f"plane{k}"
        frames, about = read_frames(inputs, channel, plane)
        if progress:
            print(f"rtdecode rois: plane {plane}, channel {channel}: {len(frames)} frames of "
                  f"{frames.shape[1]}x{frames.shape[2]} -> suite2p (registration, detection, classifier; "
                  "about 3 min for 1,800 frames of 512x512 on 2 cores)", file=sys.stderr, flush=True)
        results.append(detect(frames, target, progress=progress, about=about, **kwargs) | {"out": str(target)})
        del frames
    return results
