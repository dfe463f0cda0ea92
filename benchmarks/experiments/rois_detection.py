"""The cost of day one: ROIs found by `rtdecode rois` (suite2p) on a calibration block, against the virtual
microscope's true cells, and the decoder fitted on each.

Every step is the command a user runs (the README's rehearsal), in a scratch folder holding a copy of
configs/: the rig's true ROIs (`rtdecode rig --write-rois`, for scoring only); a calibration block
(train movies) and a held-out block (oracle movies), both recorded with raw frames and no ROIs
(configs/virtual_rig_2p_calibration.yaml); `rtdecode rois` on the calibration block; then, for the
detected and for the true ROIs, `rtdecode fit CALIB --rois R`, `rtdecode export TEST --rois R --tier
oracle`, `rtdecode reconstruct`: the same two sessions, only the ROIs differ (and a third arm: every ROI
suite2p found, as `rtdecode rois --threshold 0` writes it).

Detection is scored by mask overlap: a detected cell (iscell column 0) and a true cell match when the
intersection over union of their pixel sets is >= 0.5 (also reported at 0.3), after moving the
detected masks by the integer shift between suite2p's mean image and the microscope's (phase
correlation: suite2p registers to its own reference, a pixel or two off the rest position). Matches
are one to one (IoU > 0.5 admits at most one partner; at 0.3 the best pairs are taken greedily).

    python benchmarks/experiments/rois_detection.py --work /tmp/rois_bench --json benchmarks/results/rois_detection.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[2]


def sh(cmd: list[str], cwd: Path, log) -> float:
    """Run an rtdecode command (this checkout's) and return its seconds; raise on failure."""
    t = time.perf_counter()
    print("$ rtdecode " + " ".join(cmd), flush=True)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "rtdecode", *cmd], cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    if p.returncode:
        raise SystemExit(f"failed ({p.returncode}): rtdecode {' '.join(cmd)}; see {log.name}")
    return time.perf_counter() - t


def record_block(tier: str, seconds: int, out: str, cwd: Path, log) -> float:
    """The virtual rig streams `tier` movies; rtdecode records them with raw frames (no ROIs)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    print(f"$ rtdecode rig --tier {tier} --seconds {seconds} & rtdecode run configs/virtual_rig_2p_calibration.yaml "
          f"--record {out}", flush=True)
    rig = subprocess.Popen([sys.executable, "-m", "rtdecode", "rig", "--tier", tier, "--seconds", str(seconds)],
                           cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        sh(["run", "configs/virtual_rig_2p_calibration.yaml", "--record", out, "--seconds", str(seconds * 3)], cwd, log)
    finally:
        rig.wait(timeout=120)
    return time.perf_counter() - t


def masks(folder: Path, cells_only: bool, shift=(0, 0)) -> tuple[sparse.csr_array, dict]:
    """(n, H*W) binary masks of a suite2p folder's ROIs (its cells, or every ROI), moved by `shift`."""
    from rtdecode.extract import safe_npy

    stat = safe_npy.load(folder / "stat.npy")
    ops = safe_npy.load(folder / "ops.npy").item()
    H, W = int(ops["Ly"]), int(ops["Lx"])
    keep = np.arange(len(stat))
    if cells_only:
        keep = np.flatnonzero(np.load(folder / "iscell.npy")[:, 0] > 0.5)
    rows, cols = [], []
    for r, i in enumerate(keep):
        y = np.asarray(stat[i]["ypix"]) + shift[0]
        x = np.asarray(stat[i]["xpix"]) + shift[1]
        ok = (y >= 0) & (y < H) & (x >= 0) & (x < W)
        cols.append(y[ok] * W + x[ok])
        rows.append(np.full(ok.sum(), r))
    m = sparse.csr_array((np.ones(sum(len(c) for c in cols)), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(len(keep), H * W))
    m.data[:] = 1.0  # a pixel listed twice counts once
    return m, ops


def integer_shift(moving: np.ndarray, fixed: np.ndarray) -> tuple[int, int]:
    """(dy, dx) that moves `moving` onto `fixed`, by phase correlation (whole pixels)."""
    a = (moving - moving.mean()) / (moving.std() + 1e-9)
    b = (fixed - fixed.mean()) / (fixed.std() + 1e-9)
    r = np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a)))
    dy, dx = np.unravel_index(np.argmax(np.abs(r)), r.shape)
    H, W = a.shape
    return (int(dy if dy <= H // 2 else dy - H), int(dx if dx <= W // 2 else dx - W))


def match(true_m: sparse.csr_array, det_m: sparse.csr_array, threshold: float) -> dict:
    """Recall, precision and the matched IoUs at an IoU threshold (one-to-one, best pairs first)."""
    inter = (true_m @ det_m.T).tocoo()
    a = np.asarray(true_m.sum(axis=1)).ravel()
    b = np.asarray(det_m.sum(axis=1)).ravel()
    iou = inter.data / (a[inter.row] + b[inter.col] - inter.data)
    order = np.argsort(-iou)
    used_t, used_d, ious = set(), set(), []
    for k in order:
        if iou[k] < threshold:
            break
        t, d = int(inter.row[k]), int(inter.col[k])
        if t in used_t or d in used_d:
            continue
        used_t.add(t)
        used_d.add(d)
        ious.append(float(iou[k]))
    n_true, n_det = true_m.shape[0], det_m.shape[0]
    return {"iou_threshold": threshold, "true_cells": n_true, "detected": n_det, "matched": len(ious),
            "recall": round(len(ious) / n_true, 4), "precision": round(len(ious) / max(n_det, 1), 4),
            "mean_iou_of_matches": round(float(np.mean(ious)), 4) if ious else None}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="scratch folder (made anew)")
    ap.add_argument("--json", required=True, help="result file")
    ap.add_argument("--calib-seconds", type=int, default=60, help="calibration block (default 60, as the README)")
    ap.add_argument("--test-seconds", type=int, default=40, help="held-out block (default 40: 4 oracle movies)")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from rtdecode.bench import write_json
    from rtdecode.rig.population import rf_patch_mask

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    shutil.copytree(ROOT / "configs", work / "configs")
    log = open(work / "commands.log", "w")
    t0 = time.perf_counter()
    times = {"true_rois": sh(["rig", "--write-rois", "truth", "--prepare-only"], work, log)}
    times["calibration_block"] = record_block("train", args.calib_seconds, "calib", work, log)
    times["test_block"] = record_block("oracle", args.test_seconds, "test", work, log)
    times["rtdecode_rois"] = sh(["rois", "calib", "--out", "detected"], work, log)
    end = json.loads((work / "calib" / "end.json").read_text())
    chunks = list((work / "calib" / "chunks").glob("*.npz"))
    raw_bytes = int(end.get("raw_frames_recorded", 0)) * 512 * 512 * 2
    disk = sum(f.stat().st_size for f in chunks)
    recording = {"frames": end.get("frames"), "dropped": end.get("dropped"),
                 "raw_frames_recorded": end.get("raw_frames_recorded"), "raw_bytes_uncompressed": raw_bytes,
                 "chunk_bytes_on_disk": disk, "on_disk_over_raw": round(disk / max(raw_bytes, 1), 3)}

    # detection against the truth
    truth_all, truth_ops = masks(work / "truth", cells_only=False)
    det_ops = masks(work / "detected", cells_only=True)[1]
    shift = integer_shift(np.asarray(det_ops["meanImg"], np.float64), np.asarray(truth_ops["meanImg"], np.float64))
    det_cells, _ = masks(work / "detected", cells_only=True, shift=shift)
    det_all, _ = masks(work / "detected", cells_only=False, shift=shift)
    detection = {"mean_image_shift_px": list(shift),
                 "cells": {str(th): match(truth_all, det_cells, th) for th in (0.5, 0.3)},
                 "every_roi_before_the_classifier": match(truth_all, det_all, 0.5)}

    # every ROI suite2p found, the classifier ignored: what `rtdecode rois --threshold 0` writes (same
    # suite2p run; only iscell.npy's column 0 differs)
    shutil.copytree(work / "detected", work / "detected_all")
    iscell = np.load(work / "detected" / "iscell.npy")
    np.save(work / "detected_all" / "iscell.npy", np.column_stack([np.ones(len(iscell)), iscell[:, 1]]))

    # the decoder with each set of ROIs, on the same two sessions
    decoding = {}
    for arm, rois in (("detected", "detected"), ("detected_threshold_0", "detected_all"), ("true", "truth")):
        times[f"fit_{arm}"] = sh(["fit", "calib", "--rois", rois, "--out", f"model_{arm}"], work, log)
        times[f"export_{arm}"] = sh(["export", "test", "--rois", rois, "--out", f"ds_{arm}", "--tier", "oracle"],
                                    work, log)
        np.save(work / f"ds_{arm}" / "meta" / "evaluation_mask.npy", rf_patch_mask())  # the demo's region
        sh(["reconstruct", f"model_{arm}", f"ds_{arm}", "--out", f"rec_{arm}"], work, log)
        metrics = json.loads((work / f"rec_{arm}" / "metrics.json").read_text())
        card = json.loads((work / f"model_{arm}" / "card.json").read_text())
        decoding[arm] = {"neurons": card.get("neurons"), "metrics": metrics}
    pc = {arm: decoding[arm]["metrics"].get("pixel_corr") for arm in decoding}
    rois_json = json.loads((work / "detected" / "rois.json").read_text())
    result = {
        "command": "python benchmarks/experiments/rois_detection.py --work " + str(args.work) + " --json " + args.json
                   + f" --calib-seconds {args.calib_seconds} --test-seconds {args.test_seconds}",
        "what": "ROIs found by `rtdecode rois` (suite2p 1.1.0) on a calibration block of the virtual rig (1,000 "
                "cells, 512x512, seed 0) against the microscope's true cells, and ridge pixel_corr on the same "
                "held-out block with a decoder fitted on the same calibration block through detected vs true ROIs",
        "match_criterion": "one-to-one, intersection over union of the binary pixel masks >= 0.5 (and 0.3), "
                           "detected masks moved by mean_image_shift_px first",
        "calibration_seconds": args.calib_seconds, "test_seconds": args.test_seconds,
        "calibration_recording": recording, "detection": detection, "suite2p": rois_json,
        "decoding": decoding,
        "pixel_corr": pc,
        "pixel_corr_cost_of_day_one": round(pc["true"] - pc["detected"], 4),
        "seconds": {k: round(v, 1) for k, v in times.items()} | {"total": round(time.perf_counter() - t0, 1)},
    }
    write_json(args.json, result)
    print(json.dumps({"detection": detection["cells"]["0.5"], "pixel_corr": pc}, indent=1))


if __name__ == "__main__":
    main()
