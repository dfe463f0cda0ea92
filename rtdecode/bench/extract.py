"""Benchmark of the extraction chains: the optimised chain vs the NumPy/SciPy reference.

`run(json_out, frames=..., rois=1000, shape=(512, 512))` renders frames on the virtual microscope,
runs both two-photon chains over the same frames in this process (one core: no parallel kernels),
and times each stage and the whole chain per frame (p50/p99, ratio), peak memory; then runs the
384-channel 30 kHz ephys chain (Numba, chunked) and its SciPy reference over the same synthetic
signal, as a multiple of real time. Targets are reported, not asserted.

    taskset -c 0 rtdecode bench extract --json benchmarks/results/bench_extract.json
"""

from __future__ import annotations

import logging
import resource
import time
import tracemalloc

import numpy as np

from rtdecode.bench import RESULTS, machine_info, parser, positive_float, positive_int, script_main, write_json
from rtdecode.extract import build_chain, default_spec
from rtdecode.extract.ephys import reference_detect
from rtdecode.extract.ephys_stages import SampleChain, build_ephys_stages, ephys_spec, events
from rtdecode.extract.kernels import warm_up_kernels
from rtdecode.extract.rois import from_footprints
from rtdecode.rig.twophoton import Microscope

log = logging.getLogger(__name__)

TARGETS = {"chain_p99_ms": 2.0, "traces_p99_ms": 0.3, "ephys_x_realtime": 20.0}


def _pct(ts) -> dict:
    a = np.asarray(ts) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "max_ms": float(a.max())}


def _time_chain(chain, movie) -> dict:
    """Per-stage and whole-chain times per frame (ms) over `movie`, after one untimed frame."""
    chain.reset()
    chain.process(movie[0])
    names = [s.name for s in chain.stages]
    per = {n: [] for n in names}
    whole = []
    pc = time.perf_counter
    for f in movie[1:]:
        chain.in_spec.check(f, "bench")
        x = f
        t_start = pc()
        for st, buf in zip(chain.stages, chain.buffers):
            t = pc()
            st.process(x, buf)
            per[st.name].append(pc() - t)
            x = buf
        whole.append(pc() - t_start)
    return {"stages": {n: _pct(v) for n, v in per.items()}, "chain": _pct(whole)}


def _alloc_peak(chain, movie, n=50) -> float:
    """Peak bytes held by allocations made while the chain runs `n` frames (tracemalloc): the
    transient per-frame allocations (e.g. the FFT outputs), 0 if none."""
    chain.reset()
    chain.process(movie[0])
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    for f in movie[1 : n + 1]:
        chain.process(f)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return float(peak - base)


def _synthetic_ephys(C: int, fs: float, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    T = int(fs * seconds)
    x = rng.normal(0, 60, (T, C)).astype(np.float32)
    n_sp = int(10 * C * seconds)  # 10 Hz per channel
    tt = rng.integers(0, T - 30, n_sp)
    cc = rng.integers(0, C, n_sp)
    wave = (-600 * np.hanning(24)).astype(np.float32)
    for t, c in zip(tt, cc):
        x[t : t + 24, c] += wave
    return np.clip(x, -32768, 32767).astype(np.int16)


def bench_ephys(C: int = 384, fs: float = 30000.0, seconds: float = 2.0, chunk: int = 1024,
                reference: str = "mean") -> dict:
    x = _synthetic_ephys(C, fs, seconds)
    noise = np.full(C, 60 * 0.195, np.float32)
    spec = ephys_spec(reference=reference, k=4.5, binned=False)  # the default chain up to detect
    chain = SampleChain(build_ephys_stages(C, chunk, spec=spec, noise=noise, scale=0.195, in_dtype=x.dtype))
    chain.warm_up()
    chain.start(fs)
    chain.process(x[:chunk])
    chain.start(fs)  # forget the warm-up block
    pc = time.perf_counter
    per_chunk, n_ev = [], 0
    t0 = pc()
    for a in range(0, x.shape[0], chunk):
        t = pc()
        ev, _ = events(chain.process(x[a : a + chunk]))
        per_chunk.append(pc() - t)
        n_ev += len(ev)
    fast_s = pc() - t0
    t = pc()
    ref_t, _ = reference_detect(x, fs, reference=reference, k=4.5, noise=noise, scale=0.195)
    ref_s = pc() - t
    return {
        "channels": C, "fs_hz": fs, "seconds_of_data": seconds, "chunk_samples": chunk,
        "reference": reference,
        "numba_s": fast_s, "numba_x_realtime": seconds / fast_s,
        "numba_chunk": _pct(per_chunk), "chunk_duration_ms": 1e3 * chunk / fs,
        "scipy_reference_s": ref_s, "scipy_x_realtime": seconds / ref_s,
        "speedup": ref_s / fast_s, "events_numba": int(n_ev), "events_reference": len(ref_t),
    }


def run(json_out, frames: int = 300, rois: int = 1000, shape=(512, 512), seed: int = 0,
        crop=None, ephys_seconds: float = 2.0, neuropil_caps=(64, 128)) -> dict:
    """Run the benchmark and write `json_out`; returns the same dict. neuropil_caps: also time the
    optimised chain with build_chain(max_neuropil_px=cap) for each cap (the default chain uses the
    whole annulus)."""
    t = time.perf_counter()
    warm_s = warm_up_kernels()
    m = Microscope(rois, seed=seed, frame_shape=tuple(shape))
    movie = m.render_movie(m.poisson_spikes(frames, seed=seed + 1))
    R = from_footprints(m.ypix, m.xpix, m.lam, tuple(shape))
    log.info("bench setup %.1f s", time.perf_counter() - t)

    fast = build_chain(default_spec(crop=crop), R, m.mean_image, fps=m.fps)
    t = time.perf_counter()
    fast.warm_up()
    warm_chain_s = time.perf_counter() - t
    t = time.perf_counter()
    fast.process(movie[0])
    first_frame_ms = (time.perf_counter() - t) * 1e3
    ref = build_chain(default_spec(crop=crop), R, m.mean_image, fps=m.fps, backend="numpy")
    ref.warm_up()

    res_fast = _time_chain(fast, movie)
    res_ref = _time_chain(ref, movie)
    capped = {}
    for cap in neuropil_caps:
        ch = build_chain(default_spec(crop=crop, max_neuropil_px=cap), R, m.mean_image, fps=m.fps)
        ch.warm_up()
        capped[f"max_neuropil_px_{cap}"] = {"nnz_neuropil": int(ch.stages[1]._weights.nnz - R.footprints.nnz),
                                            **_time_chain(ch, movie)}
    ratio = {n: res_ref["stages"][n]["p50_ms"] / res_fast["stages"][n]["p50_ms"] for n in res_fast["stages"]}
    ratio["chain"] = res_ref["chain"]["p50_ms"] / res_fast["chain"]["p50_ms"]
    ratio_p99 = {n: res_ref["stages"][n]["p99_ms"] / res_fast["stages"][n]["p99_ms"] for n in res_fast["stages"]}
    ratio_p99["chain"] = res_ref["chain"]["p99_ms"] / res_fast["chain"]["p99_ms"]

    eph = bench_ephys(seconds=ephys_seconds)
    eph_med = bench_ephys(seconds=min(1.0, ephys_seconds), reference="median")
    out = {
        "machine": machine_info(),
        "config": {"frames": frames, "rois": rois, "shape": list(shape), "crop": None if crop is None else list(crop),
                   "nnz_footprints": int(R.footprints.nnz), "nnz_neuropil": int(R.neuropil.nnz)},
        "twophoton": {
            "optimised": res_fast, "numpy_reference": res_ref, "optimised_neuropil_capped": capped,
            "speedup_p50": ratio, "speedup_p99": ratio_p99,
            "kernel_compile_or_cache_load_s": warm_s, "chain_warm_up_s": warm_chain_s,
            "first_frame_after_warm_up_ms": first_frame_ms,
            "alloc_peak_transient_bytes_optimised": _alloc_peak(fast, movie),
            "alloc_peak_transient_bytes_reference": _alloc_peak(ref, movie),
        },
        "ephys_car_mean": eph, "ephys_car_median": eph_med,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "targets": TARGETS,
        "vs_targets": {
            "chain_p99_ms": res_fast["chain"]["p99_ms"],
            "traces_p99_ms": res_fast["stages"]["traces"]["p99_ms"],
            "ephys_x_realtime": eph["numba_x_realtime"],
            "chain_met": res_fast["chain"]["p99_ms"] <= TARGETS["chain_p99_ms"],
            "traces_met": res_fast["stages"]["traces"]["p99_ms"] <= TARGETS["traces_p99_ms"],
            "ephys_met": eph["numba_x_realtime"] >= TARGETS["ephys_x_realtime"],
            **{f"traces_p99_ms_{k}": v["stages"]["traces"]["p99_ms"] for k, v in capped.items()},
        },
    }
    log.info("wrote %s", write_json(json_out, out))
    return out


def main(argv=None, progress=False) -> int:
    p = parser("extract", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "bench_extract.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--frames", type=positive_int, default=300)
    p.add_argument("--rois", type=positive_int, default=1000)
    p.add_argument("--shape", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    p.add_argument("--ephys-seconds", type=positive_float, default=2.0)
    args = p.parse_args(argv)
    run(args.out, frames=args.frames, rois=args.rois, shape=tuple(args.shape), ephys_seconds=args.ephys_seconds)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
