"""Where the live loop runs (rtdecode.live.cpu.Pinning), interleaved repeats of one 30 Hz e2e run per variant
(rtdecode.bench.e2e.run_once: 512x512, 1,000 ROIs, ridge decoder, sender and subscriber in child processes).

    python benchmarks/experiments/cpu_pinning.py REPEATS FRAMES OUT.json
"""
import json, sys, tempfile, numpy as np
from rtdecode.bench import e2e
from rtdecode.live.session import limit_blas_threads
# The results file was made with an earlier interface (commit fc83d17 + `move_others`): 'pinned' = the loop on the
# last CPU and every other thread of the process on the others; 'loop_only' = the loop on the last CPU (now
# cpu.pipeline); 'rt' = 'pinned' + SCHED_FIFO 50 for the loop and ZeroMQ's I/O threads; 'rt_loop_only' = 'loop_only'
# + the same priorities (now cpu.pipeline + cpu.priority). Today's interface can run: unpinned, loop_only, rt_loop_only,
# and the default's new real-time mode, which does not pin (rt_unpinned).
VARIANTS = {"unpinned": dict(), "loop_only": dict(cpu=1), "rt_loop_only": dict(cpu=1, priority=50),
            "rt_unpinned": dict(priority=50)}
def main():
    reps, frames = int(sys.argv[1]), int(sys.argv[2])
    limit_blas_threads(1)
    out = {k: [] for k in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        chain, card = e2e.build_live(tmp, 1000, (512, 512), 0)
        for r in range(reps):
            for k, kw in VARIANTS.items():
                res = e2e.run_once(chain, card, 1.0, frames, 1000, (512, 512), 0, **kw)
                out[k].append({"acq": res["acquired_to_published_ms"], "arr": res["arrived_to_published_ms"],
                               "load": res["loadavg_start"][0]})
                print(k, out[k][-1], flush=True)
    from rtdecode.bench import machine_info
    out = {"command": "python benchmarks/experiments/cpu_pinning.py " + " ".join(sys.argv[1:]), "variants": VARIANTS,
           "runs": out, "machine": machine_info(),
           "note": "acq: acquired_to_published_ms, arr: arrived_to_published_ms (p50/p99 of each run); load: 1-min "
                   "load average at the start of the run (other sessions' jobs)"}
    json.dump(out, open(sys.argv[3], "w"), indent=1)
if __name__ == "__main__":
    main()
