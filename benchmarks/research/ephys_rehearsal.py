"""Sorting or not, measured: the electrophysiology rehearsal on the virtual probe, crossings vs sorted units.

One virtual probe (`rtdecode rig --ephys`) streams a calibration block, then held-out movies, as the
Open Ephys GUI does; two `rtdecode run` processes read the SAME stream at 1x real time, one the
ZMQ Interface's voltage (threshold crossings per channel, configs/virtual_probe*.yaml), one the
Event Broadcaster's sorted units (configs/virtual_probe_sorted*.yaml). Each records its calibration
block with no model, is fitted (`rtdecode fit`, ridge) and compiled, then runs live with a trigger and a
recording. Written to --out (JSON, with the command that made it):

- per path: live pixel_corr from the session's stats (`live_quality`, full frame), the same
  recomputed from the recording over the rig's receptive-field patch, the offline decoder on the
  recorded live session (`rtdecode export --out` then `rtdecode reconstruct`, full frame); per-stage
  latency; acquisition (sample clock mapped to this PC) -> published p50 / p99; frames, drops;
- the probe's voltage generation speed (x real time) and the ephys chain's throughput
  (rtdecode.bench.extract.bench_ephys at the same channel count);
- --png: stimulus against the live reconstruction from both paths, a few frames of one movie.

    python benchmarks/research/ephys_rehearsal.py --channels 384 --calibration-s 300 --live-s 40 \\
        --out benchmarks/results/ephys_rehearsal.json --png benchmarks/results/ephys_live_frames.png

Ports: 5580-5587 (docs/ephys.md). Needs 2 free cores for ~(calibration + live) x 1.3 + the fits.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from research_common import ROOT, machine_info, parser, script_main, write_json  # noqa: E402

PATHS = {"crossings": ("virtual_probe_calibration.yaml", "virtual_probe.yaml", "virtual_ephys"),
         "sorted": ("virtual_probe_sorted_calibration.yaml", "virtual_probe_sorted.yaml", "virtual_ephys_sorted")}


def write_configs(work: Path, channels: int, units: int) -> None:
    """configs/virtual_probe*.yaml into work/configs, for `channels` channels and `units` units."""
    dst = work / "configs"
    dst.mkdir(parents=True, exist_ok=True)
    for name in [n for pair in PATHS.values() for n in pair[:2]]:
        text = (ROOT / "configs" / name).read_text()
        text = re.sub(r"channels: 0-\d+", f"channels: 0-{channels - 1}", text)
        text = re.sub(r"units: Probe:1-\d+", f"units: Probe:1-{units}", text)
        (dst / name).write_text(text)


def rtdecode(*args: str) -> list[str]:
    return [sys.executable, "-m", "rtdecode", *args]


def run_block(work: Path, env: dict, rig_args: list[str], runs: dict[str, list[str]], timeout: float) -> dict:
    """The rig and one `rtdecode run` per path at once; returns {path: stdout+stderr} and the rig's."""
    logs = {}
    rig = subprocess.Popen(rtdecode("rig", "--ephys", *rig_args), cwd=work, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)
    procs = {k: subprocess.Popen(rtdecode("run", *a), cwd=work, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for k, a in runs.items()}
    try:
        for k, p in procs.items():
            logs[k] = p.communicate(timeout=timeout)[0]
            if p.returncode != 0:
                raise RuntimeError(f"rtdecode run ({k}) failed:\n{logs[k][-3000:]}")
        logs["rig"] = rig.communicate(timeout=60)[0]
    finally:
        for p in [rig, *procs.values()]:
            if p.poll() is None:
                p.kill()
    return logs


def score_recording(session: Path, mask: np.ndarray | None) -> dict:
    """pixel_corr of the recorded decoded frames against the stimulus images they target."""
    from rtdecode import metrics
    from rtdecode.outputs.session_reader import read_session

    a = read_session(session)["arrays"]
    images = {}
    for (tr, fr), img in zip(map(tuple, a["shown"]), a["stimulus"]):
        if tr >= 0:
            images.setdefault((int(tr), int(fr)), img)
    pairs = []
    valid = a["decoded_valid"] & (a["target"][:, 0] >= 0)
    for trial in sorted(set(a["target"][valid, 0].tolist())):
        rows = [i for i in np.flatnonzero(valid & (a["target"][:, 0] == trial))
                if (trial, int(a["target"][i, 1])) in images]
        rows = sorted(rows, key=lambda i: a["target"][i, 1])
        if len(rows) <= metrics.SKIP_FRAMES + 1:
            continue
        rec = a["decoded"][rows]
        stim = np.stack([images[(trial, int(a["target"][i, 1]))] for i in rows]).astype(np.float32)
        pairs.append((rec, stim))
    if not pairs:
        return {"pixel_corr": None}
    s = metrics.score(pairs, mask)
    return {k: s[k] for k in ("pixel_corr", "frame_corr", "pixel_corr_full", "trials")}


def frames_png(sessions: dict[str, Path], png: Path, n: int = 6) -> None:
    """Stimulus (top row) against each path's live reconstruction, n frames of the first scored trial."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rtdecode.outputs.session_reader import read_session

    arrays = {k: read_session(v)["arrays"] for k, v in sessions.items()}
    first = next(iter(arrays.values()))
    images = {(int(t), int(f)): img for (t, f), img in zip(map(tuple, first["shown"]), first["stimulus"]) if t >= 0}
    trial = int(np.median(first["target"][first["target"][:, 0] >= 0, 0]))
    frames = [f for f in range(45, 300, 45)][:n]
    fig, ax = plt.subplots(1 + len(arrays), len(frames), figsize=(2.2 * len(frames), 1.5 * (1 + len(arrays))))
    for j, f in enumerate(frames):
        ax[0, j].imshow(images.get((trial, f), np.zeros((36, 64))), cmap="gray", vmin=0, vmax=255)
        ax[0, j].set_title(f"frame {f}", fontsize=8)
        for i, (k, a) in enumerate(arrays.items(), 1):
            rows = np.flatnonzero((a["target"][:, 0] == trial) & (a["target"][:, 1] == f) & a["decoded_valid"])
            img = a["decoded"][rows[0]] if rows.size else np.zeros((36, 64))
            ax[i, j].imshow(img, cmap="gray")
            if j == 0:
                ax[i, j].set_ylabel(k, fontsize=8)
    ax[0, 0].set_ylabel("stimulus", fontsize=8)
    for a_ in ax.ravel():
        a_.set_xticks([])
        a_.set_yticks([])
    fig.suptitle(f"virtual probe, held-out movie (trial {trial}): stimulus vs live reconstruction", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def _end_stats(session: Path) -> dict:
    end = json.loads((session / "end.json").read_text())
    return end.get("stats", end)


def _rate(session: Path) -> float:
    """Mean events per input per second of a recorded session (activity: events per bin, 30 bins/s)."""
    from rtdecode.outputs.session_reader import read_session

    return float(read_session(session)["arrays"]["activity"].mean() * 30.0)


def _load() -> list[float] | None:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def main(argv: list[str] | None = None, progress: bool = False) -> int:
    import os

    from rtdecode.bench.extract import bench_ephys
    from rtdecode.rig.population import rf_patch_mask
    from rtdecode.rig.probe import default_units

    p = parser("ephys_rehearsal", __doc__)
    p.add_argument("--channels", type=int, default=384)
    p.add_argument("--units", type=int, default=None, help="default: 0.8 per channel (rtdecode.rig.probe)")
    p.add_argument("--calibration-s", type=float, default=300.0)
    p.add_argument("--live-s", type=float, default=40.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/rtdecode-ephys-rehearsal", help="scratch folder (emptied)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ephys_rehearsal.json"))
    p.add_argument("--png", default=None)
    p.add_argument("--paths", nargs="+", default=list(PATHS), choices=list(PATHS))
    args = p.parse_args(argv)
    cmd = "python benchmarks/research/ephys_rehearsal.py " + " ".join(sys.argv[1:] if argv is None else argv)
    units = args.units or default_units(args.channels)
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    write_configs(work, args.channels, units)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rig_common = ["--probe-channels", str(args.channels), "--units", str(units), "--seed", str(args.seed),
                  "--data-port", "5580", "--broadcaster-port", "5582", "--stim", "tcp://127.0.0.1:5583"]
    out: dict = {"command": cmd, "channels": args.channels, "units": units, "calibration_s": args.calibration_s,
                 "live_s": args.live_s, "seed": args.seed, "paths": {}}
    t0 = time.perf_counter()
    out["load_average_at_start"] = _load()
    # 1. calibration block, both paths on the same stream
    calib = run_block(work, env, ["--tier", "train", "--seconds", f"{args.calibration_s:g}", *rig_common],
                      {k: [f"configs/{PATHS[k][0]}", "--record", f"sessions/{k}/calibration", "--seconds",
                           f"{args.calibration_s + 120:g}"] for k in args.paths}, args.calibration_s + 300)
    out["rig_calibration"] = calib["rig"].strip().splitlines()[-1]
    # 2. fit and compile each
    fit_s = {}
    for k in args.paths:
        t = time.perf_counter()
        subprocess.run(rtdecode("fit", f"sessions/{k}/calibration", "--out", f"models/{PATHS[k][2]}"), cwd=work,
                       env=env, check=True, capture_output=True)
        fit_s[k] = round(time.perf_counter() - t, 1)
        subprocess.run(rtdecode("compile", f"models/{PATHS[k][2]}"), cwd=work, env=env, check=True,
                       capture_output=True)
    # 3. live on held-out movies, both paths on the same stream
    live = run_block(work, env, ["--tier", "oracle", "--seconds", f"{args.live_s:g}", *rig_common],
                     {k: [f"configs/{PATHS[k][1]}", "--record", f"sessions/{k}/live", "--seconds",
                          f"{args.live_s + 120:g}"] for k in args.paths}, args.live_s + 300)
    out["rig_live"] = live["rig"].strip().splitlines()[-1]
    m = re.search(r"generated at ([0-9.]+)x real time", live["rig"])
    out["probe_generation_x_real_time"] = float(m.group(1)) if m else None
    mask = rf_patch_mask()
    for k in args.paths:
        st = _end_stats(work / "sessions" / k / "live")
        subprocess.run(rtdecode("export", f"sessions/{k}/live", "--out", f"data/{k}_live", "--tier", "oracle"),
                       cwd=work, env=env, check=True, capture_output=True)
        subprocess.run(rtdecode("reconstruct", f"models/{PATHS[k][2]}", f"data/{k}_live", "--out", f"rec/{k}"),
                       cwd=work, env=env, check=True, capture_output=True)
        offline = json.loads((work / "rec" / k / "metrics.json").read_text())
        inspect = subprocess.run(rtdecode("inspect", f"sessions/{k}/live"), cwd=work, env=env, capture_output=True,
                                 text=True)
        q = st.get("live_quality") or {}
        out["paths"][k] = {
            "live_pixel_corr": q.get("pixel_corr"), "live_quality": q,
            "recorded_pixel_corr_rf_patch": score_recording(work / "sessions" / k / "live", mask),
            "recorded_pixel_corr_full": score_recording(work / "sessions" / k / "live", None),
            "offline_pixel_corr": offline.get("pixel_corr"), "offline_metrics": {
                kk: offline.get(kk) for kk in ("pixel_corr", "pixel_corr_full", "frame_corr", "trials")},
            "stages_ms": st.get("stages_ms"), "acquired_to_published_ms": st.get("acquired_to_published_ms"),
            "arrived_to_published_ms": st.get("arrived_to_published_ms"), "frames": st.get("frames"),
            "published": st.get("published"), "dropped": st.get("dropped"), "rejected": st.get("rejected"),
            "triggers_fired": (st.get("triggers") or {}).get("fired"), "fit_s": fit_s[k],
            "calibration_frames": _end_stats(work / "sessions" / k / "calibration").get("frames"),
            "rate_hz_per_input": {blk: _rate(work / "sessions" / k / blk) for blk in ("calibration", "live")},
            "inspect": inspect.stdout.strip().splitlines()[-1] if inspect.stdout.strip() else inspect.stderr[-300:],
            "inspect_rc": inspect.returncode, "summary_line": [ln for ln in live[k].splitlines()
                                                                if ln.startswith("backend ")][-1:]}
        if progress:
            print(k, json.dumps({kk: out["paths"][k][kk] for kk in ("live_pixel_corr", "offline_pixel_corr",
                                                                     "acquired_to_published_ms", "frames")}))
    chain = bench_ephys(C=args.channels, seconds=2.0)
    out["ephys_chain"] = chain
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["load_average_at_end"] = _load()  # the machine is shared: other work competes for its 2 cores
    out["machine"] = machine_info()
    write_json(args.out, out)
    if args.png:
        frames_png({k: work / "sessions" / k / "live" for k in args.paths}, Path(args.png))
    return 0


if __name__ == "__main__":
    script_main(main)
