"""What the live per-pixel uncertainty adds per decoded frame (rtdecode.live.uncertainty.LiveUncertainty):
the K = 5 fold ridges on the decode stage's window, their per-pixel std, and the 'uncertainty' message
sent on a PUB socket with one subscriber, on one BLAS thread (as `rtdecode run` sets it). Random fold
weights of exactly the shapes `rtdecode fit --method amortized` gives (rank 128, 3 temporal basis
functions, an 8-bin ridge window inside the 16-bin clip window, activity compression, 36x64 frames), or a
fitted model directory with --model; the input is random gamma-distributed activity windows. The live
loop computes all of it after the decoded frame is published (rtdecode.live.session), so this is time
added to the loop's turn, not to the decoded frame's latency.

    python benchmarks/experiments/live_uncertainty_latency.py --json benchmarks/results/live_uncertainty_latency.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np


def timed(fn, runs):
    for _ in range(50):
        fn()
    ts = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        fn()
        ts[i] = time.perf_counter() - t
    ts *= 1e3
    return {"p50": float(np.percentile(ts, 50)), "p99": float(np.percentile(ts, 99)), "max": float(ts.max()), "n": runs}


def main():
    import zmq
    from threadpoolctl import threadpool_limits

    from rtdecode.live.uncertainty import LiveUncertainty
    from rtdecode.outputs.publish import Publisher

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--neurons", type=int, nargs="+", default=[1000, 4000])
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--model", default=None, help="a fitted image-prior amortized model directory")
    a = p.parse_args()
    threadpool_limits(1, user_api="blas")
    out = {"command": " ".join(["python", "benchmarks/experiments/live_uncertainty_latency.py"] + sys.argv[1:]),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
           "numpy": np.__version__, "blas_threads": 1, "results": []}
    pub = Publisher()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"uncertainty")
    sub.setsockopt(zmq.RCVHWM, 10)  # a viewer that reads only the newest: the PUB drops past its HWM
    sub.connect(pub.endpoint)
    time.sleep(0.3)
    rng = np.random.default_rng(0)
    for n in ([None] if a.model else a.neurons):
        if a.model:
            from rtdecode.decode import model as model_dir

            card, arrays = model_dir.load(a.model)
            unc = LiveUncertainty.from_model(card, arrays)
            n, bins = card.in_shape
        else:
            K, nb, rank, rb, back, fwd, (H, W) = 5, 3, 128, 8, 4, 4, (36, 64)
            bins = rb + back + fwd
            basis = rng.normal(0, 0.3, (rb, nb)).astype(np.float32)
            unc = LiveUncertainty(rng.uniform(0.1, 1, n), rng.uniform(0.5, 1.5, n), basis, 2.4, back,
                                  rng.normal(0, 0.01, (K, n * nb, rank)).astype(np.float32),
                                  rng.normal(0, 0.1, (K, rank, H * W)).astype(np.float32), (H, W))
        x = rng.gamma(0.5, 1.0, (n, bins)).astype(np.float32)
        row = {"neurons": n, "window_bins": bins, "folds": unc.k, "rank": unc.rank, "frame_shape": list(unc.frame_shape),
               "model": a.model or "random weights, fitted shapes",
               "macs_per_frame": int(unc.w_in.size + unc.w_out.size + n * unc.ridge_bins * unc.basis.shape[1])}
        row["spread_ms"] = timed(lambda: unc.compute(x), a.runs)

        def spread_and_send():
            s = unc.compute(x)
            pub.send("uncertainty", s, t=0.0, trial=0, frame=0, target_t=0.0, target_local_t=0.0, frameNumberAcq=1)

        row["spread_and_publish_ms"] = timed(spread_and_send, a.runs)
        while sub.poll(0):
            sub.recv_multipart()
        out["results"].append(row)
        print(json.dumps(row), flush=True)
    sub.close()
    pub.close()
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
