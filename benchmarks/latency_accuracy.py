"""Extraction accuracy (motion error, trace / dF/F / activity correlation with the virtual rig's truth) of
build_chain for several registration crops, on the same data as `python benchmarks/research/rig_accuracy.py`
(500 cells, seed 11, 3 px motion). `python benchmarks/latency_accuracy.py FRAMES CROPS OUT.json`, e.g. 900 256,128 out.json."""
import sys, json, numpy as np
from scipy.ndimage import gaussian_filter1d
from rtdecode.extract import build_chain, default_spec, extract_movie
from rtdecode.extract.rois import from_footprints
from rtdecode.rig.twophoton import Microscope
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent / "research"))
from rig_accuracy import rowcorr  # benchmarks/research/rig_accuracy.py
def main():
    frames = int(sys.argv[1]); crops = [int(c) for c in sys.argv[2].split(",")]; outp = sys.argv[3]
    m = Microscope(500, seed=11, frame_shape=(512, 512), motion_px=3.0)
    movie = m.render_movie(m.poisson_spikes(frames, rate_hz=2.0, seed=12))
    truth = m.truth
    rois = from_footprints(m.ypix, m.xpix, m.lam, m.frame_shape)
    out = {"command": "python benchmarks/latency_accuracy.py " + " ".join(sys.argv[1:]), "cells": 500, "frames": frames,
           "motion_px": 3.0, "data": "Microscope(500, seed=11, motion_px=3), poisson_spikes(rate 2 Hz, seed=12)"}
    for c in crops:
        chain = build_chain(default_spec(crop=(c, c)), rois, m.mean_image, fps=m.fps); chain.warm_up()  # downsample: the default (2 from 320 px)
        res = extract_movie(chain, movie)
        err = np.abs(res["shifts"] - truth["shifts"])
        c_trace = rowcorr(res["F"] - 0.7 * res["Fneu"], truth["F"].T)
        c_dff = rowcorr(res["dff"], truth["F"].T)
        sp = gaussian_filter1d(truth["spikes"].T, 1.0, axis=1)
        c_act = rowcorr(gaussian_filter1d(res["activity"], 1.0, axis=1), sp)
        out[f"crop_{c}"] = {"downsample": chain.stages[0].downsample, "motion_abs_err_px": {"mean": float(err.mean()), "max": float(err.max()),
                              "frac_within_0.5px": float(np.mean(np.all(err <= 0.5, axis=1)))},
            "trace_corr_F_minus_rFneu_median": float(np.median(c_trace)),
            "dff_corr_vs_true_F_median": float(np.median(c_dff)),
            "activity_corr_median": float(np.median(c_act)), "activity_corr_p5": float(np.percentile(c_act, 5))}
        print(c, out[f"crop_{c}"], flush=True)
    from rtdecode.bench import machine_info
    out["machine"] = machine_info()
    json.dump(out, open(outp, "w"), indent=1)
if __name__ == "__main__":
    main()
