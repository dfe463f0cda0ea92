"""Extraction accuracy on the virtual microscope (known traces and shifts), optimised vs reference.

    python benchmarks/research/rig_accuracy.py [--out rig_accuracy.json] [--cells 500] [--frames 900]
        [--max-neuropil-px none 64]

Each `--max-neuropil-px` value (build_chain's cap on neuropil pixels per ROI; "none" = the whole
annulus) is a separate run of both backends, reported under "cap_<value>".
"""

from __future__ import annotations

import json

import numpy as np
from scipy.ndimage import gaussian_filter1d

from research_common import RESULTS, parser, script_main, write_json
from rtdecode.extract import build_chain, default_spec, extract_movie
from rtdecode.extract.rois import from_footprints
from rtdecode.rig.twophoton import Microscope


def rowcorr(a, b):
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1) + 1e-30)


def main(argv=None, progress=False) -> int:
    p = parser("rig_accuracy", __doc__)
    p.add_argument("--out", default=str(RESULTS / "rig_accuracy.json"), help="JSON file to write (default %(default)s)")
    p.add_argument("--cells", type=int, default=500)
    p.add_argument("--frames", type=int, default=900)
    p.add_argument("--motion-px", type=float, default=3.0)
    p.add_argument("--max-neuropil-px", nargs="*", default=["none", "64", "128"])
    a = p.parse_args(argv)
    m = Microscope(a.cells, seed=11, frame_shape=(512, 512), motion_px=a.motion_px)
    movie = m.render_movie(m.poisson_spikes(a.frames, rate_hz=2.0, seed=12))
    truth = m.truth
    rois = from_footprints(m.ypix, m.xpix, m.lam, m.frame_shape)
    out = {"cells": a.cells, "frames": a.frames, "motion_px": a.motion_px, "shape": [512, 512],
           "neuropil_px_per_roi_uncapped": {"mean": float(rois.neuropil.nnz / rois.n)}}
    for cap in a.max_neuropil_px:
        out[f"cap_{cap}"] = run_cap(rois, m, movie, truth, None if cap == "none" else int(cap))
    write_json(a.out, out)
    print(json.dumps(out, indent=1))
    return 0


def run_cap(rois, m, movie, truth, cap):
    out = {"max_neuropil_px": cap}
    for backend in ("fast", "numpy"):
        chain = build_chain(default_spec(max_neuropil_px=cap), rois, m.mean_image, fps=m.fps, backend=backend)
        chain.warm_up()
        res = extract_movie(chain, movie)
        err = np.abs(res["shifts"] - truth["shifts"])
        c_trace = rowcorr(res["F"] - 0.7 * res["Fneu"], truth["F"].T)
        c_dff = rowcorr(res["dff"], truth["F"].T)
        sp = gaussian_filter1d(truth["spikes"].T, 1.0, axis=1)
        c_act = rowcorr(gaussian_filter1d(res["activity"], 1.0, axis=1), sp)
        out[backend] = {
            "motion_abs_err_px": {"mean": float(err.mean()), "max": float(err.max()),
                                  "frac_within_0.5px": float(np.mean(np.all(err <= 0.5, axis=1)))},
            "trace_corr_F_minus_rFneu": {"median": float(np.median(c_trace)), "p5": float(np.percentile(c_trace, 5))},
            "dff_corr_vs_true_F": {"median": float(np.median(c_dff))},
            "activity_corr_vs_true_spikes_smoothed_1frame": {"median": float(np.median(c_act)),
                                                             "p5": float(np.percentile(c_act, 5))},
        }
        out[backend + "_arrays"] = res
    f, n = out.pop("fast_arrays"), out.pop("numpy_arrays")
    out["fast_vs_numpy_max_abs_diff"] = {k: float(np.abs(f[k] - n[k]).max()) for k in ("F", "Fneu", "dff", "activity", "shifts")}
    return out


if __name__ == "__main__":
    script_main(main)
