"""Data-parallel fitting: 1 process vs N processes (torchrun, gloo) on this machine.

    python benchmarks/research/ddp_scaling.py --json benchmarks/results/ddp_scaling.json

A virtual-rig dataset is written once; then, back to back and interleaved over `--repeats`
rounds, each configuration runs the two parallel stages of `rtdecode fit` in fresh processes:
the encoder's training loop (`--steps` AdamW steps, global batch `--batch` clips: DDP, each rank
its share) and the iterative inverse of `--inverse-trials` calibration trials (split by trial).
Configurations: 1 process x 1 thread, 1 process x N threads (intra-op parallelism, the
alternative on one machine) and N processes x 1 thread. Recorded per run: the wall time of the
whole command (start-up and rendezvous included), the encoder loop's seconds and clips/s, the
inverse's seconds and trials/s (timed between barriers, so the slowest rank counts), and the
result's median over the rounds. A shared machine's load is recorded at each run's start.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from research_common import RESULTS, machine_info, parser, positive_int, script_main, write_json

SCRIPT = str(Path(__file__).resolve())  # the worker runs this file again (torchrun takes a script)

log = logging.getLogger(__name__)


def worker(data: str, out: str, steps: int, batch: int, inverse_trials: int, iterations: int, threads: int,
           ensemble: int = 0, spread: bool = True) -> None:
    """One rank's part (run by torchrun, or alone): time the encoder loop and the inverse."""
    import torch

    from rtdecode.decode import distributed as dist
    from rtdecode.decode import encoder as E
    from rtdecode.decode.inverse import InverseConfig, invert_trials
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import load_trials

    torch.set_num_threads(threads)
    with dist.session() as env:
        ds = Dataset(data)
        trials = load_trials(ds, ds.require("train"), ds.n_neurons)
        tr = E.TrialData([t[1] for t in trials], [t[2] for t in trials], [t[0] for t in trials])
        env.barrier()
        if ensemble:  # an ensemble: members spread over the ranks, or each member in DDP
            t0 = time.perf_counter()
            E.train_ensemble(tr, None, ensemble, steps=steps, batch=batch, seed=0, spread=spread)
            env.barrier()
            s = time.perf_counter() - t0
            if env.is_main:
                Path(out).write_text(json.dumps({
                    "world_size": env.world_size, "threads_per_process": threads, "members": ensemble,
                    "mode": "one process" if not env.distributed else ("spread" if spread else "ddp"),
                    "ensemble_s": s, "ensemble_clips_per_s": ensemble * steps * batch / s}))
            return
        model, info = E.train_encoder(tr, None, steps=steps, batch=batch, seed=0)
        loop_s = info["train_seconds"] - info["init_seconds"]
        env.barrier()
        t0 = time.perf_counter()
        invert_trials([model], [(t[0], t[2]) for t in trials[:inverse_trials]], cfg=InverseConfig(iterations=iterations))
        env.barrier()
        inv_s = time.perf_counter() - t0
        if env.is_main:
            Path(out).write_text(json.dumps({
                "world_size": env.world_size, "backend": env.backend, "threads_per_process": threads,
                "encoder_init_s": info["init_seconds"], "encoder_loop_s": loop_s,
                "encoder_clips_per_s": steps * batch / loop_s, "encoder_steps_per_s": steps / loop_s,
                "inverse_s": inv_s, "inverse_trials_per_s": inverse_trials / inv_s}))


def run(json_out, nproc: int = 2, neurons: int = 500, trials: int = 8, frames: int = 300, steps: int = 60,
        batch: int = 8, inverse_trials: int = 4, iterations: int = 5, repeats: int = 2, seed: int = 0,
        command: str = "python benchmarks/research/ddp_scaling.py") -> dict:
    from rtdecode.rig import VirtualRig

    machine = machine_info(gpu=None, note="no GPU in this run: the NCCL path is written, not measured")
    configs = [(1, 1), (1, nproc), (nproc, 1)]  # (processes, threads per process)
    runs = []
    with tempfile.TemporaryDirectory(prefix="rtdecode-ddp-") as tmp:
        data = VirtualRig(n_neurons=neurons, seed=seed, n_train=trials, n_oracle=1,
                          trial_frames=frames).write_dataset(Path(tmp) / "mouse")
        for r in range(repeats):
            for procs, threads in configs:
                part = Path(tmp) / f"part_{r}_{procs}_{threads}.json"
                wargs = ["--worker", "--data", str(data), "--part", str(part), "--steps", str(steps),
                         "--batch", str(batch), "--inverse-trials", str(inverse_trials),
                         "--iterations", str(iterations), "--threads", str(threads)]
                if procs == 1:
                    cmd = [sys.executable, SCRIPT, *wargs]
                else:
                    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
                           "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
                           SCRIPT, *wargs]
                env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
                for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
                    env.pop(v, None)
                load = [round(x, 2) for x in os.getloadavg()]
                t0 = time.perf_counter()
                p = subprocess.run(cmd, env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if p.returncode:
                    raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
                res = {"round": r, "processes": procs, "loadavg_start": load, "wall_s": wall,
                       **json.loads(part.read_text())}
                log.info("%s", res)
                runs.append(res)
    summary = {}
    for procs, threads in configs:
        rs = [x for x in runs if x["processes"] == procs and x["threads_per_process"] == threads]
        summary[f"{procs}x{threads}"] = {k: float(np.median([x[k] for x in rs])) for k in
                                         ("wall_s", "encoder_loop_s", "encoder_clips_per_s", "inverse_s",
                                          "inverse_trials_per_s")}
    base = summary["1x1"]
    for v in summary.values():
        v["encoder_speedup_vs_1x1"] = v["encoder_clips_per_s"] / base["encoder_clips_per_s"]
        v["inverse_speedup_vs_1x1"] = v["inverse_trials_per_s"] / base["inverse_trials_per_s"]
    out = {"machine": machine,
           "command": command,
           "config": {"nproc": nproc, "neurons": neurons, "train_trials": trials, "trial_frames": frames,
                      "encoder_steps": steps, "global_batch_clips": batch, "inverse_trials": inverse_trials,
                      "inverse_iterations": iterations, "repeats": repeats, "backend": "gloo"},
           "summary_median": summary, "runs": runs}
    write_json(json_out, out)
    return out


def run_ensemble(json_out, members: int = 2, nproc: int = 2, neurons: int = 500, trials: int = 8, frames: int = 300,
                 steps: int = 40, batch: int = 8, repeats: int = 2, seed: int = 0,
                 command: str = "python benchmarks/research/ddp_scaling.py --ensemble 2") -> dict:
    """An ensemble of `members` encoders: 1 process vs `nproc` processes with the members spread
    over them vs `nproc` processes training each member in DDP; back to back, interleaved."""
    from rtdecode.rig import VirtualRig

    machine = machine_info(gpu=None)
    modes = [(1, "spread"), (nproc, "spread"), (nproc, "ddp")]
    runs = []
    with tempfile.TemporaryDirectory(prefix="rtdecode-ddp-") as tmp:
        data = VirtualRig(n_neurons=neurons, seed=seed, n_train=trials, n_oracle=1,
                          trial_frames=frames).write_dataset(Path(tmp) / "mouse")
        for r in range(repeats):
            for procs, mode in modes:
                part = Path(tmp) / f"ens_{r}_{procs}_{mode}.json"
                wargs = ["--worker", "--data", str(data), "--part", str(part), "--steps", str(steps),
                         "--batch", str(batch), "--ensemble", str(members), "--threads", "1"]
                if mode == "ddp":
                    wargs.append("--no-spread")
                res = _launch(procs, wargs, part)
                res["round"] = r
                log.info("%s", res)
                runs.append(res)
    summary = {}
    for procs, mode in modes:
        rs = [x for x in runs if x["world_size"] == procs and (procs == 1 or x["mode"] == mode)]
        key = "1 process" if procs == 1 else f"{procs} processes, {mode}"
        summary[key] = {k: float(np.median([x[k] for x in rs])) for k in ("wall_s", "ensemble_s", "ensemble_clips_per_s")}
    base = summary["1 process"]["ensemble_clips_per_s"]
    for v in summary.values():
        v["speedup_vs_1_process"] = v["ensemble_clips_per_s"] / base
    out = {"machine": machine, "command": command,
           "config": {"members": members, "nproc": nproc, "neurons": neurons, "train_trials": trials,
                      "trial_frames": frames, "encoder_steps": steps, "global_batch_clips": batch,
                      "repeats": repeats, "backend": "gloo"},
           "summary_median": summary, "runs": runs}
    write_json(json_out, out)
    return out


def _launch(procs: int, wargs: list[str], part: Path) -> dict:
    """Run the worker in `procs` processes (torchrun when > 1); its result plus wall time and load."""
    if procs == 1:
        cmd = [sys.executable, SCRIPT, *wargs]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(procs),
               "--master-addr", "127.0.0.1", "--master-port", str(_free_port()),
               SCRIPT, *wargs]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(v, None)
    load = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return {"processes": procs, "loadavg_start": load, "wall_s": wall, **json.loads(part.read_text())}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None, progress=False) -> int:
    p = parser("ddp_scaling", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "ddp_scaling.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--nproc", type=positive_int, default=2)
    p.add_argument("--neurons", type=positive_int, default=500)
    p.add_argument("--trials", type=positive_int, default=8)
    p.add_argument("--steps", type=positive_int, default=60)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--inverse-trials", type=positive_int, default=4)
    p.add_argument("--iterations", type=positive_int, default=5)
    p.add_argument("--repeats", type=positive_int, default=2)
    p.add_argument("--ensemble", type=int, default=0, metavar="K",
                   help="instead: an ensemble of K encoders, members spread over the processes vs each in DDP "
                   "(default output benchmarks/results/ddp_ensemble.json)")
    p.add_argument("--no-spread", dest="spread", action="store_false", help=argparse_hidden())
    p.add_argument("--threads", type=positive_int, default=1, help=argparse_hidden())
    p.add_argument("--worker", action="store_true", help=argparse_hidden())
    p.add_argument("--data", help=argparse_hidden())
    p.add_argument("--part", help=argparse_hidden())
    args = p.parse_args(argv)
    if args.worker:
        worker(args.data, args.part, args.steps, args.batch, args.inverse_trials, args.iterations, args.threads,
               args.ensemble, args.spread)
        return 0
    command = " ".join(["python benchmarks/research/ddp_scaling.py", *(argv if argv is not None else sys.argv[1:])])
    if args.ensemble:
        out = args.out if args.out != str(RESULTS / "ddp_scaling.json") else str(RESULTS / "ddp_ensemble.json")
        d = run_ensemble(out, args.ensemble, args.nproc, args.neurons, args.trials, steps=args.steps,
                         batch=args.batch, repeats=args.repeats, command=command)
        for k, v in d["summary_median"].items():
            print(f"{k:24} wall {v['wall_s']:6.1f} s  ensemble {v['ensemble_s']:6.1f} s  "
                  f"{v['ensemble_clips_per_s']:6.2f} clips/s  x{v['speedup_vs_1_process']:.2f}")
        print(f"wrote {out}")
        return 0
    d = run(args.out, args.nproc, args.neurons, args.trials, steps=args.steps, batch=args.batch,
            inverse_trials=args.inverse_trials, iterations=args.iterations, repeats=args.repeats,
            command=command)
    print(f"{'config':8} {'wall s':>7} {'enc loop s':>10} {'clips/s':>8} {'x':>5} {'inverse s':>9} {'trials/s':>8} {'x':>5}")
    for k, v in d["summary_median"].items():
        print(f"{k:8} {v['wall_s']:7.1f} {v['encoder_loop_s']:10.1f} {v['encoder_clips_per_s']:8.2f} "
              f"{v['encoder_speedup_vs_1x1']:5.2f} {v['inverse_s']:9.1f} {v['inverse_trials_per_s']:8.3f} "
              f"{v['inverse_speedup_vs_1x1']:5.2f}")
    print(f"wrote {args.out}")
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    script_main(main)
