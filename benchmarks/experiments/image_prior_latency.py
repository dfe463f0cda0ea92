"""Batch-1 latency of the image-prior amortized decoder through ONNX Runtime on one CPU thread, and
its ONNX-vs-torch parity. Random weights of exactly the shapes `rtdecode fit` gives (ridge rank
128, 3 temporal basis functions, activity compression in the graph, the default U-Net), or a
fitted model directory with --model; the input is random gamma-distributed activity windows.
The ridge decoder of the same shapes runs in the same process as the baseline.

    python benchmarks/experiments/image_prior_latency.py --json benchmarks/results/image_prior_latency.json
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch


def timed(session, name, x, runs):
    for _ in range(50):
        session.run(None, {name: x})
    ts = np.empty(runs)
    for i in range(runs):
        t = time.perf_counter()
        session.run(None, {name: x})
        ts[i] = time.perf_counter() - t
    ts *= 1e3
    return {"p50": float(np.percentile(ts, 50)), "p99": float(np.percentile(ts, 99)), "max": float(ts.max()), "n": runs}


def main():
    import onnxruntime as ort

    from rtdecode.decode import image_prior as ip
    from rtdecode.decode import ridge

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--neurons", type=int, nargs="+", default=[1000, 4000])
    p.add_argument("--runs", type=int, default=2000)
    p.add_argument("--model", default=None, help="a fitted image-prior amortized model directory")
    a = p.parse_args()
    torch.set_num_threads(1)
    out = {"command": " ".join(["python", "benchmarks/experiments/image_prior_latency.py"] + sys.argv[1:]),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "machine": f"{platform.machine()} {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start",
           "onnxruntime": ort.__version__, "torch": torch.__version__, "threads": 1, "results": []}
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    for n in ([None] if a.model else a.neurons):
        if a.model:
            from rtdecode import decode

            net = decode.load(a.model)[1].net
            n = net.n_neurons
            dec = None
        else:
            dec = ridge.random_decoder(n, 8)
            dec.act_scale = 2.4
            net = ip.ImagePriorNet(n, 8, dec.basis.shape[1], dec.weights.shape[1], dec.frame_shape)
            net.set_linear(dec)
            with torch.no_grad():  # a U-Net that is not the identity, so every layer computes
                for prm in net.unet.parameters():
                    prm.normal_(0, 0.05)
        net.eval()
        x = np.random.default_rng(0).gamma(0.5, 1.0, (1, n, net.bins)).astype(np.float32)
        row = {"neurons": n, "window_bins": net.bins, "macs_per_frame": net.macs_per_frame(),
               "model": a.model or "random weights, fitted shapes"}
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "net.onnx")
            torch.onnx.export(net, (torch.from_numpy(x),), path, input_names=["window"], output_names=["frame"],
                              opset_version=17, dynamo=False)
            s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
            with torch.no_grad():
                ref = net(torch.from_numpy(x)).numpy()
            got = s.run(None, {"window": x})[0]
            row["parity_max_rel_err"] = float(np.abs(got - ref).max() / np.abs(ref).max())
            row["image_prior_ms"] = timed(s, "window", x, a.runs)
            if dec is not None:  # the ridge of the same shapes, its own 8-bin window
                rpath = os.path.join(tmp, "ridge.onnx")
                rx = np.ascontiguousarray(x[:, :, :8])
                torch.onnx.export(dec.as_torch_module(), (torch.from_numpy(rx),), rpath, input_names=["window"],
                                  output_names=["frame"], opset_version=17, dynamo=False)
                row["ridge_ms"] = timed(ort.InferenceSession(rpath, so, providers=["CPUExecutionProvider"]), "window",
                                        rx, a.runs)
        out["results"].append(row)
        print(json.dumps(row), flush=True)
    with open(a.json, "w") as f:
        json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
