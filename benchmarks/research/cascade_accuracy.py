"""Spike inference accuracy on real ground truth (Cascade collection), rtdecode vs OASIS.

For every recording (CAttached element) of /work/shared/data/cascade_ground_truth/*.mat: dF/F of
`fluo_mean` from rtdecode's DeltaF stage, then (a) rtdecode's online Deconvolve stage (frame by
frame, causal) and (b) OASIS (`oasis-deconv` package, offline AR(1), L1 penalty) on the same dF/F
trace, once with its own estimated decay and once with the same tau as ours. rtdecode runs both
methods: "threshold" (zero delay) and "oasis" (online OASIS, fixed lag) for each `--lag-s` (lag =
round(lag_s * fps) frames at the recording's rate); the lagged output is shifted back by its lag
before scoring (it estimates the activity of frame t - lag), and the delay is reported. Each inferred
activity and the ground-truth spike count per frame (events_AP / 1e4 s) are smoothed with the same
Gaussian (sigma `--sigma-s`) and Pearson-correlated. Runs at the recording's own frame rate.
The `fluo_mean` traces are already dF/F-like (around 0, some negative); they are offset so that
their 5th percentile is 1 before DeltaF (a unit baseline), the same for both methods.

    python benchmarks/research/cascade_accuracy.py [--out cascade_accuracy.json]
"""

from __future__ import annotations

import glob
import json
import time
from pathlib import Path

import numpy as np
import scipy.io as sio
from scipy.ndimage import gaussian_filter1d

from research_common import RESULTS, parser, repo_root, script_main, write_json
from rtdecode.extract.deconv import Deconvolve
from rtdecode.extract.dff import DeltaF

DEFAULT = repo_root() / ".." / "shared" / "data" / "cascade_ground_truth"
TAU = {"GC6f": 0.7, "GC6s": 1.5, "Cux2f": 0.7}  # indicator decay used by both, s


def run_stage(stage, x):
    out = stage.out_spec.empty()
    res = np.empty_like(x)
    for t in range(x.shape[0]):
        stage.process(x[t : t + 1], out)
        res[t] = out[0]
    return res


def corr(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + 1e-30))


def main(argv=None, progress=False) -> int:
    p = parser("cascade_accuracy", __doc__)
    p.add_argument("--data", default=str(DEFAULT))
    p.add_argument("--out", default=str(RESULTS / "cascade_accuracy.json"), help="JSON file to write (default %(default)s)")
    p.add_argument("--sigma-s", type=float, default=0.2)
    p.add_argument("--k-sigma", type=float, default=2.0)
    p.add_argument("--lag-s", type=float, nargs="*", default=[0.05, 0.1, 0.15, 0.2])
    a = p.parse_args(argv)
    try:
        from oasis.functions import deconvolve as oasis_deconvolve
        oasis_name = "oasis-deconv (PyPI)"
    except ImportError:  # pragma: no cover
        oasis_deconvolve, oasis_name = None, "not installed"
    rows = []
    for path in sorted(glob.glob(str(Path(a.data) / "*.mat"))):
        cells = np.atleast_1d(sio.loadmat(path, squeeze_me=True, struct_as_record=False)["CAttached"])
        ind = next(k for k in TAU if k in path)
        for j, e in enumerate(cells):
            t = np.asarray(e.fluo_time, np.float64)
            y = np.asarray(e.fluo_mean, np.float64)
            ok = np.isfinite(t) & np.isfinite(y)
            t, y = t[ok], y[ok]
            fps = 1.0 / np.median(np.diff(t))
            spikes = np.asarray(e.events_AP, np.float64).ravel() / 1e4
            edges = np.concatenate([t - 0.5 / fps, [t[-1] + 0.5 / fps]])
            gt = np.histogram(spikes, edges)[0].astype(np.float64)
            if gt.sum() < 5:
                continue
            F = (y - np.percentile(y, 5) + 1.0).astype(np.float32)
            dff = run_stage(DeltaF(1, fps=fps, tau_down_s=2.0, tau_up_s=60.0), F)
            t0 = time.perf_counter()
            ours = run_stage(Deconvolve(1, fps=fps, tau_s=TAU[ind], k_sigma=a.k_sigma), dff)
            ours_us = (time.perf_counter() - t0) / len(dff) * 1e6
            sig = a.sigma_s * fps
            g_s = gaussian_filter1d(gt, sig)
            row = {"file": Path(path).name, "cell": j, "fps": fps, "frames": len(t),
                   "spikes": int(gt.sum()), "tau_s": TAU[ind],
                   "rtdecode_deconvolve": corr(gaussian_filter1d(ours.astype(np.float64), sig), g_s),
                   "dff_itself": corr(gaussian_filter1d(dff.astype(np.float64), sig), g_s),
                   "rtdecode_us_per_frame_python_loop": ours_us}
            for lag_s in a.lag_s:
                lag = int(round(lag_s * fps))
                st = Deconvolve(1, fps=fps, tau_s=TAU[ind], k_sigma=a.k_sigma, method="oasis", lag=lag)
                on = np.zeros(len(dff))
                on[: len(dff) - lag] = run_stage(st, dff)[lag:]  # output of frame t is frame t - lag
                row[f"rtdecode_oasis_lag{lag_s:g}s"] = corr(gaussian_filter1d(on, sig), g_s)
                row[f"rtdecode_oasis_lag{lag_s:g}s_frames"] = lag
            if oasis_deconvolve is not None:
                d64 = dff.astype(np.float64)
                r1 = oasis_deconvolve(d64, penalty=1)
                r2 = oasis_deconvolve(d64, tau_d=TAU[ind], framerate=fps, penalty=1)
                row["oasis_estimated_g"] = corr(gaussian_filter1d(np.asarray(r1.s, np.float64), sig), g_s)
                row["oasis_same_tau"] = corr(gaussian_filter1d(np.asarray(r2.s, np.float64), sig), g_s)
            rows.append(row)
            print(row["file"], j, {k: round(v, 3) for k, v in row.items() if k.startswith(("rtdecode", "oasis", "dff")) and "frames" not in k and "us_per" not in k})
    keys = ["rtdecode_deconvolve"] + [f"rtdecode_oasis_lag{x:g}s" for x in a.lag_s]
    keys += [k for k in ("oasis_estimated_g", "oasis_same_tau", "dff_itself") if rows and k in rows[0]]
    summary = {k: {"mean": float(np.mean([r[k] for r in rows])), "median": float(np.median([r[k] for r in rows]))}
               for k in keys}
    out = {"oasis": oasis_name, "sigma_s": a.sigma_s, "k_sigma": a.k_sigma, "lag_s": a.lag_s,
           "recordings": len(rows), "fps": sorted({round(r["fps"], 1) for r in rows}),
           "summary": summary, "rows": rows,
           "note": "rtdecode_deconvolve: method 'threshold', causal, no delay. rtdecode_oasis_lagXs: "
                   "method 'oasis', online, activity lag = round(X * fps) frames late (X s), scored "
                   "after shifting back by the lag. OASIS (package) is offline over the whole trace."}
    write_json(a.out, out)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    script_main(main)
