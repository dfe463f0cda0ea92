"""Batch-1 latency of the default amortized decoder (ridge + residual) at 4,000 neurons through
onnxruntime on one CPU thread, random weights of the shapes `rtdecode fit` gives; ONNX vs torch parity.
With --model DIR, the network of a fitted model directory instead (its neurons; the input is one of
random gamma-distributed activity windows, as for the random weights).

    python benchmarks/experiments/residual_latency.py --json benchmarks/results/residual_latency.json
"""
import argparse, json, sys, tempfile, time
from pathlib import Path
import numpy as np, torch

from rtdecode.decode import ridge
from rtdecode.decode.residual import RidgeResidualNet

p = argparse.ArgumentParser()
p.add_argument("--json", required=True)
p.add_argument("--neurons", type=int, nargs="+", default=[1000, 4000])
p.add_argument("--runs", type=int, default=2000)
p.add_argument("--model", default=None, help="a fitted amortized model directory (rtdecode fit --method amortized)")
p.add_argument("--act-scale", type=float, default=2.4, help="activity compression scale (0: none; fit's default is 6 x the mean activity)")
a = p.parse_args()
import onnxruntime as ort
out = {"command": "python benchmarks/experiments/residual_latency.py " + " ".join(sys.argv[1:]), "results": []}
def fitted(folder):
    from rtdecode.decode import amortized as am
    from rtdecode.decode import model as model_dir

    card, arrays = model_dir.load(folder)
    return am.net_from_arrays(arrays, card).eval()


for n in ([None] if a.model else a.neurons):
    if a.model:
        net = fitted(a.model)
        n = net.n_neurons
    else:
        dec = ridge.random_decoder(n, 8)
        dec.act_scale = a.act_scale  # the compression (log1p) is part of the graph when > 0
        net = RidgeResidualNet.from_ridge(dec).eval()
        with torch.no_grad():
            for m in (net.fc1, net.fc2, net.fc3):
                m.weight.normal_(0, 0.02)
    x = np.random.default_rng(0).gamma(0.5, 2.0, (1, n, 8)).astype(np.float32)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        torch.onnx.export(net, (torch.from_numpy(x),), str(path), input_names=["x"], output_names=["y"], opset_version=17, dynamo=False)
        so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
        s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        y = s.run(None, {"x": x})[0]
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        for _ in range(200):
            s.run(None, {"x": x})
        ts = []
        for _ in range(a.runs):
            t = time.perf_counter(); s.run(None, {"x": x}); ts.append(time.perf_counter() - t)
    ts = np.array(ts) * 1e3
    r = {"neurons": n, "macs_per_frame": net.macs_per_frame(), "onnx_parity_max_rel_err": err,
         "p50_ms": float(np.percentile(ts, 50)), "p99_ms": float(np.percentile(ts, 99)), "runs": a.runs, "threads": 1,
         "act_scale": float(net.act_scale[0]) if a.model else a.act_scale, "model": a.model}
    print(r, flush=True)
    out["results"].append(r)
from rtdecode.bench import machine_info
out["machine"] = machine_info()
Path(a.json).write_text(json.dumps(out, indent=2) + "\n")
