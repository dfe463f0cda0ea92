"""Benchmark of the decoder backends: batch-1 latency of each available backend, side by side.

`run(json_out, neurons=(1000, 4000, 8000))` writes, for each neuron count, two model directories in
a temporary folder -- the stand-in amortized network (N*bins -> 512 -> H*W, bins 8) and a ridge
decoder of the same shape with random weights (linear, temporal basis as `rtdecode fit` chooses) --
exports each to ONNX (parity checked), and times every backend that loads here on the same inputs in
interleaved rounds (a ratio holds on a noisy machine; an absolute time does not, docs/design.md 3.5). The
baseline is torch eager on the CPU; the ridge decoder's NumPy `predict_window` (the current live
path) is timed too. At the largest neuron count the stand-in of the REFERENCES E anchor shape
(N -> 512 -> H*W, i.e. bins 1) is added. Backends that do not load are listed with the reason.
Targets are reported, not asserted.

    taskset -c 1 rtdecode bench decode --json benchmarks/results/bench_decode.json
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from rtdecode.bench import RESULTS, machine_info, parser, positive_float, positive_int, script_main, write_json

log = logging.getLogger(__name__)

TARGETS = {"onnxruntime_cpu_p99_ms": {"1000": 1.0, "8000": 3.0}}
# column -> (backend name, load options)
COLUMNS = {
    "torch_eager": ("torch", {"device": "cpu"}),
    "onnxruntime": ("onnxruntime", {"device": "cpu"}),
    "onnxruntime_cuda": ("onnxruntime", {"device": "cuda"}),
    "torch_cuda_graph": ("torch", {"device": "cuda"}),
    "tensorrt": ("tensorrt", {}),
}
BASELINE = "torch_eager"


def _machine_info(threads: int) -> dict:
    import onnxruntime
    import torch

    return machine_info(threads_per_backend=threads, onnxruntime_providers=onnxruntime.get_available_providers(),
                        cuda=torch.cuda.is_available(), gpu=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)


def _pct(ts_s) -> dict:
    a = np.asarray(ts_s) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean()), "max_ms": float(a.max()), "runs": int(a.size)}


def _make_models(root: Path, n: int, bins: int, frame_shape, hidden: int, seed: int) -> dict:
    from rtdecode.decode import model as model_files
    from rtdecode.decode import ridge
    from rtdecode.bench.standin import write_standin_model

    dec = ridge.random_decoder(n, bins, frame_shape, seed=seed)  # the shapes `rtdecode fit` gives
    nb = dec.basis.shape[1]
    model_files.save(root / f"ridge_{n}", model_files.new_card("ridge", n, 0, bins, frame_shape, 30.0), dec.arrays())
    write_standin_model(root / f"mlp_{n}", n, bins, frame_shape, hidden, seed)
    return {"ridge": (root / f"ridge_{n}", dec, nb), "standin_mlp": (root / f"mlp_{n}", None, None)}


def _time_cell(model_dir: Path, columns, threads: int, runs: int, rounds: int, budget_s: float,
               numpy_decoder=None, seed: int = 0) -> tuple[dict, dict]:
    """({column: latency}, {column: why unavailable}) for one model, interleaved rounds."""
    from rtdecode.decode.backends import BackendUnavailable, load_backend
    from rtdecode.decode.export import rel_err
    from rtdecode.decode.model import read_card

    card = read_card(model_dir)
    loaded, unavailable, info = {}, {}, {}
    for col in columns:
        name, opts = COLUMNS[col]
        opts = dict(opts)
        if name in ("torch", "onnxruntime") and opts.get("device") == "cpu":
            opts["threads"] = threads
        try:
            b = load_backend(name, model_dir, card, **opts)
            t = time.perf_counter()
            b.warm_up()
            info[col] = {**b.describe(), "warm_up_s": time.perf_counter() - t}
            loaded[col] = b.run
        except BackendUnavailable as exc:
            unavailable[col] = str(exc)
    if numpy_decoder is not None:
        loaded["numpy_predict_window"] = numpy_decoder.predict_window
        info["numpy_predict_window"] = {"backend": "numpy RidgeDecoder.predict_window (the DecodeStage path)"}
    (n, bins), (h, w) = (card.neurons, card.window.bins), card.frame_shape
    rng = np.random.default_rng(seed)
    inputs = rng.gamma(0.5, 2.0, (8, n, bins)).astype(np.float32)
    outs = {c: np.zeros((h, w), np.float32) for c in loaded}
    # Same input, every column: outputs must agree (the benchmark checks what it times).
    for c, f in loaded.items():
        f(inputs[0], outs[c])
    ref = outs.get(BASELINE, next(iter(outs.values()), None))
    agree = {c: rel_err(o, ref) for c, o in outs.items()} if ref is not None else {}
    times = {c: [] for c in loaded}
    deadline = {c: 0.0 for c in loaded}
    per_round = max(1, runs // rounds)
    pc = time.perf_counter
    for r in range(rounds):
        for c, f in loaded.items():
            if deadline[c] > budget_s:
                continue
            out, ts = outs[c], times[c]
            t_round = pc()
            for i in range(per_round):
                x = inputs[i % 8]
                t = pc()
                f(x, out)
                ts.append(pc() - t)
            deadline[c] += pc() - t_round
    res = {c: {**_pct(times[c]), **info[c], "rel_err_vs_baseline": agree.get(c)} for c in loaded}
    base = res.get(BASELINE)
    if base:
        for c, v in res.items():
            v["speedup_p50_vs_torch_eager"] = base["p50_ms"] / v["p50_ms"]
            v["speedup_p99_vs_torch_eager"] = base["p99_ms"] / v["p99_ms"]
    return res, unavailable


def run(json_out, neurons=(1000, 4000, 8000), bins: int = 8, hidden: int = 512, frame_shape=(36, 64),
        threads: int = 1, runs: int = 1000, rounds: int = 5, budget_s: float = 5.0, anchor: bool = True,
        columns=None, seed: int = 0, progress=None) -> dict:
    """Run the benchmark and write `json_out`; returns the same dict."""
    from rtdecode.decode.backends import check_names
    from rtdecode.decode.export import export_onnx

    say = progress or (lambda s: None)
    columns = list(columns or COLUMNS)
    check_names({COLUMNS[c][0] for c in columns if c in COLUMNS})
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        from rtdecode.errors import ConfigError

        raise ConfigError(f"unknown benchmark column(s) {unknown}; valid: {', '.join(COLUMNS)}")
    out = {"machine": _machine_info(threads),
           "config": {"neurons": list(neurons), "bins": bins, "hidden": hidden, "frame_shape": list(frame_shape),
                      "runs_per_cell": runs, "rounds": rounds, "time_budget_per_cell_s": budget_s,
                      "baseline": BASELINE, "batch": 1,
                      "models": {"standin_mlp": f"N*{bins} -> {hidden} (ReLU) -> {frame_shape[0] * frame_shape[1]}, "
                                                "random weights",
                                 "ridge": "z-score, temporal basis (bins x nb, nb = rtdecode's default), "
                                          "N*nb -> rank 128 -> H*W (two matmuls, as fit gives), random weights",
                                 "standin_mlp_bins1": f"N -> {hidden} -> {frame_shape[0] * frame_shape[1]} "
                                                      "(REFERENCES E anchor shape), largest N only"}},
           "results": [], "unavailable": {}, "targets": TARGETS}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtdecode-bench-") as tmp:
        root = Path(tmp)
        for n in neurons:
            models = _make_models(root, n, bins, frame_shape, hidden, seed)
            if anchor and n == max(neurons):
                from rtdecode.bench.standin import write_standin_model

                write_standin_model(root / f"mlp1_{n}", n, 1, frame_shape, hidden, seed)
                models["standin_mlp_bins1"] = (root / f"mlp1_{n}", None, None)
            for kind, (folder, dec, nb) in models.items():
                say(f"{kind} at {n} neurons: export")
                t = time.perf_counter()
                entry = export_onnx(folder)
                export_s = time.perf_counter() - t
                say(f"{kind} at {n} neurons: timing")
                res, unav = _time_cell(folder, columns, threads, runs, rounds, budget_s, dec, seed)
                for c, why in unav.items():
                    out["unavailable"].setdefault(c, why)
                out["results"].append({"model": kind, "neurons": n, "bins": 1 if kind == "standin_mlp_bins1" else bins,
                                       "n_basis": nb, "onnx_mb": (folder / entry["file"]).stat().st_size / 1e6,
                                       "onnx_parity_max_rel_err": entry["parity_max_rel_err"],
                                       "export_s": export_s, "backends": res})
                # free the model files as we go (up to ~150 MB each at 8,000 neurons)
                for f in folder.iterdir():
                    f.unlink()
    out["elapsed_s"] = time.perf_counter() - t0
    try:
        out["machine"]["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    ort = {str(r["neurons"]): r["backends"]["onnxruntime"]["p99_ms"] for r in out["results"]
           if r["model"] == "standin_mlp" and "onnxruntime" in r["backends"]}
    out["vs_targets"] = {"onnxruntime_cpu_p99_ms_standin_mlp": ort,
                         "met": {k: ort[k] <= v for k, v in TARGETS["onnxruntime_cpu_p99_ms"].items() if k in ort}}
    log.info("wrote %s", write_json(json_out, out))
    return out


def summary_lines(d: dict) -> list[str]:
    lines = []
    for r in d["results"]:
        cols = "  ".join(f"{c} {v['p50_ms']:.3f}/{v['p99_ms']:.3f}" + (
            f" (x{v['speedup_p50_vs_torch_eager']:.2f})" if "speedup_p50_vs_torch_eager" in v else "")
            for c, v in r["backends"].items())
        lines.append(f"{r['model']:>17} N={r['neurons']:<5} p50/p99 ms: {cols}")
    for c, why in d["unavailable"].items():
        lines.append(f"unavailable: {c}: {why}")
    return lines


def main(argv=None, progress=False) -> int:
    p = parser("decode", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "bench_decode.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--neurons", type=positive_int, nargs="+", default=[1000, 4000, 8000])
    p.add_argument("--bins", type=positive_int, default=8)
    p.add_argument("--threads", type=positive_int, default=1)
    p.add_argument("--runs", type=positive_int, default=1000)
    p.add_argument("--budget", type=positive_float, default=5.0, help="max seconds timed per backend per model")
    args = p.parse_args(argv)
    say = (lambda s: log.info("bench decode: %s", s)) if progress else None
    d = run(args.out, neurons=tuple(args.neurons), bins=args.bins, threads=args.threads, runs=args.runs,
            budget_s=args.budget, progress=say)
    for line in summary_lines(d):
        print(line)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
