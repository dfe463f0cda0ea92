"""`rtdecode compile MODEL [--backend NAME ...]`: export the ONNX graph if missing, build and warm
the first backend that loads, and say what runs (and why the others did not)."""

from __future__ import annotations

import logging
import time

import numpy as np

from rtdecode.decode.backends import DEFAULT_PREFERENCE, check_names, choose
from rtdecode.decode.card import read_card
from rtdecode.decode.export import export_onnx

log = logging.getLogger(__name__)


def compile_model(model, preference=DEFAULT_PREFERENCE, threads: int = 1, force_export: bool = False,
                  fp16: bool = False, rebuild: bool = False, runs: int = 200) -> dict:
    """Export (if needed), choose, warm up and time a backend; returns a report dict."""
    names = check_names(preference)
    t = time.perf_counter()
    entry = export_onnx(model, force=force_export)
    export_s = time.perf_counter() - t
    card = read_card(model)
    options = {"onnxruntime": {"threads": threads}, "torch": {"threads": threads},
               "tensorrt": {"fp16": fp16, "rebuild": rebuild}}
    t = time.perf_counter()
    backend = choose(names, model, card, options)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    backend.warm_up()
    warm_s = time.perf_counter() - t
    rng = np.random.default_rng(0)
    x = rng.gamma(0.5, 2.0, backend.in_shape).astype(np.float32)
    y = np.zeros(backend.out_shape, np.float32)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        backend.run(x, y)
        ts.append(time.perf_counter() - t)
    ms = np.asarray(ts) * 1e3
    return {"model": str(model), "onnx": entry, "backend": backend.describe(), "skipped": backend.skipped,
            "export_s": export_s, "load_s": load_s, "warm_up_s": warm_s,
            "latency_ms": {"p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)), "runs": runs}}


def cmd_compile(args, progress=None) -> int:
    r = compile_model(args.model, getattr(args, "backend", None) or DEFAULT_PREFERENCE,
                      threads=getattr(args, "threads", 1), force_export=getattr(args, "force_export", False),
                      fp16=getattr(args, "fp16", False), rebuild=getattr(args, "rebuild", False))
    o, b, lat = r["onnx"], r["backend"], r["latency_ms"]
    print(f"onnx: {args.model}/{o['file']} (opset {o['opset']}, sha256 {o['sha256'][:12]}..., "
          f"input {o['inputs'][0]['name']} {o['inputs'][0]['shape']}, output {o['outputs'][0]['name']} "
          f"{o['outputs'][0]['shape']})")
    detail = ", ".join(f"{k} {v}" for k, v in b.items() if k != "backend")
    print(f"runs: {b['backend']} ({detail})")
    for s in r["skipped"]:
        print(f"skipped: {s}")
    print(f"warm-up {r['warm_up_s'] * 1e3:.0f} ms; batch-1 latency p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms "
          f"over {lat['runs']} runs")
    return 0
