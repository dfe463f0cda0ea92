"""NWB export time and peak memory on a synthesised session (docs/design.md 3.5):

    python benchmarks/research/nwb.py --minutes 10 --json benchmarks/results/nwb_export.json

The session is written through the recorder API (`Recorder.add` as fast as the disk takes it, not
in real time) with the arrays a live two-photon session records per 30 Hz frame: activity, F, Fneu,
dF/F (float32, neurons each), motion shifts, the decoded frame (float32 36x64), the stimulus image
(uint8 36x64), the alignment and latency; rois.npz from the virtual rig's microscope (512x512) and
a trigger every 3 s. Each measured step runs in its own process, which reports its wall time and
peak RSS (getrusage): the baseline (reading every chunk once, the exporter's own first pass), the
export with gzip (the default) and without.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from research_common import machine_info

log = logging.getLogger(__name__)


def synth_session(folder: Path, frames: int, neurons: int, fps: float = 30.0, seed: int = 0) -> Path:
    """Write a two-photon session of `frames` frames through the recorder API; returns the folder."""
    from rtdecode.extract.rois import load_suite2p
    from rtdecode.outputs.record import Recorder, rois_npz
    from rtdecode.rig.twophoton import Microscope

    rng = np.random.default_rng(seed)
    shape = (36, 64)
    scope = Microscope(neurons, seed=seed, frame_shape=(512, 512))
    with tempfile.TemporaryDirectory() as tmp:
        scope.save_rois(tmp)
        rois = load_suite2p(tmp)
    config = {"source": {"protocol": "rtframe", "address": ["tcp://127.0.0.1:5555"]},
              "extraction": {"two_photon": {"fps": fps}},
              "triggers": [{"name": "bright", "kind": "zmq", "address": "tcp://127.0.0.1:5570"}]}
    rec = Recorder(folder, neurons, shape, meta={"config": config, "model_card": {"neurons": neurons},
                                                 "source": "benchmarks/research/nwb.py (synthesised)"}, fps=fps,
                   extras={k: ((neurons,), "float32") for k in ("F", "Fneu", "dff")} | {"shifts": ((2,), "float32")})
    rec.attach("rois", rois_npz(rois, scope.mean_image))
    t0 = time.time()
    # A few distinct arrays cycled through: the content does not matter for speed, but gzip sees noise.
    pool = [{"act": rng.gamma(0.3, 1.0, neurons).astype(np.float32),
             "F": rng.normal(300, 30, neurons).astype(np.float32), "Fneu": rng.normal(200, 20, neurons).astype(np.float32),
             "dff": rng.normal(0, 0.2, neurons).astype(np.float32),
             "dec": rng.uniform(0, 255, shape).astype(np.float32), "stim": rng.integers(0, 256, shape, np.uint8)}
            for _ in range(16)]
    for k in range(frames):
        p = pool[k % len(pool)]
        t = t0 + k / fps + rng.normal(0, 1e-4)
        trial, sf = divmod(k, 300)
        rec.add(k, t, p["act"], p["dec"] if k >= 7 else None, (trial, sf), (trial, max(sf - 7, 0)), 0.004,
                p["stim"], {"F": p["F"], "Fneu": p["Fneu"], "dff": p["dff"],
                            "shifts": rng.normal(0, 1, 2).astype(np.float32)})
        if k % 90 == 45:
            rec.trigger({"rule": "bright", "score": 171.0, "t_frame": t - 7 / fps, "t": t + 0.01, "trial": trial,
                         "frame": sf, "frameNumberAcq": k})
    rec.close({"frames": frames, "dropped": 0, "rejected": 0, "latency_ms": {"p50": 4.0, "p99": 6.0}})
    return folder


def _step(name: str, session: str, out: str) -> dict:
    """Run one measured step in this process; returns wall time and this process's peak RSS."""
    t0 = time.perf_counter()
    if name == "read_chunks":
        from rtdecode.offline.session_chunks import SessionChunks

        SessionChunks(Path(session))
    else:
        from rtdecode.offline.nwb_export import export_nwb

        export_nwb(session, out, compress=name == "export_gzip", subject={"age": "P90D"})
    wall = time.perf_counter() - t0
    return {"wall_s": round(wall, 2), "peak_rss_mib": _peak_rss_mib()}


def _peak_rss_mib() -> float:
    """This process's peak resident memory: VmHWM (getrusage's ru_maxrss would carry over the
    parent's peak across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run(minutes: float, neurons: int, out_json: Path, keep: str | None = None) -> dict:
    from rtdecode.outputs.record import git_commit

    frames = int(round(minutes * 60 * 30))
    work = Path(tempfile.mkdtemp(prefix="rtdecode-nwb-bench-", dir=keep))
    try:
        session = work / "session"
        t0 = time.perf_counter()
        synth_session(session, frames, neurons)
        synth_s = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in session.rglob("*") if p.is_file())
        steps = {}
        for name in ("read_chunks", "export_gzip", "export_raw"):
            nwb = work / f"{name}.nwb"
            res = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--step", name, str(session), str(nwb)],
                                 capture_output=True, text=True, check=True)
            steps[name] = json.loads(res.stdout.strip().splitlines()[-1])
            if nwb.exists():
                steps[name]["file_mib"] = round(nwb.stat().st_size / 2**20, 1)
                nwb.unlink()
            log.info("%s: %s", name, steps[name])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    import h5py
    import hdmf
    import pynwb

    base = steps["read_chunks"]["wall_s"]
    result = {
        "command": f"python benchmarks/research/nwb.py --minutes {minutes:g} --neurons {neurons} --json {out_json}",
        "commit": git_commit(),
        "machine": machine_info(pynwb=pynwb.__version__, hdmf=hdmf.__version__, h5py=h5py.__version__),
        "session": {"frames": frames, "minutes": minutes, "fps": 30, "neurons": neurons, "decoded_shape": [36, 64],
                    "rois_frame": [512, 512], "size_mib": round(size / 2**20, 1), "synthesised_s": round(synth_s, 1),
                    "how": "synthesised through rtdecode.outputs.record.Recorder (not a live run of that length)"},
        "steps": steps,
        "export_vs_read_ratio": {k: round(v["wall_s"] / base, 2) for k, v in steps.items() if base > 0},
        "target": "peak RSS under 1 GB (1024 MiB) for a one-hour 30 Hz session (issue 15)",
    }
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None, progress=False) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/research/nwb.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="session length at 30 Hz (default 10)")
    p.add_argument("--neurons", type=int, default=1000)
    p.add_argument("--json", default="nwb_export.json")
    p.add_argument("--tmp", default=None, help="folder for the synthesised session (default: the system's)")
    p.add_argument("--step", nargs=3, default=None, metavar=("NAME", "SESSION", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.step:
        print(json.dumps(_step(*args.step)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(json.dumps(run(args.minutes, args.neurons, Path(args.json), args.tmp), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
