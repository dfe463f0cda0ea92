"""The registration estimate's region and binning (docs/latency.md): motion error against the virtual
rig's true shifts and the estimate's time, per (crop, downsample). Tuning data: seed 5 (the accuracy
report, benchmarks/latency_accuracy.py, uses seed 11). Times are one process, one core, frames in a
cache-evicting loop; compare rows of one run, not runs.

    python benchmarks/register_grid.py 600 benchmarks/results/register_grid.json
"""
import json
import sys
import time

import numpy as np

from rtdecode.bench import machine_info
from rtdecode.extract.register import Register
from rtdecode.rig.twophoton import Microscope

GRID = [(256, 1), (128, 1), (256, 2), (320, 2), (384, 2), (512, 2), (512, 4)]


def main():
    frames, outp = int(sys.argv[1]), sys.argv[2]
    m = Microscope(500, seed=5, frame_shape=(512, 512), motion_px=3.0)
    movie = m.render_movie(m.poisson_spikes(frames, rate_hz=2.0, seed=6))
    truth = m.truth["shifts"]
    junk = np.ones(4_000_000)  # 32 MB: evicts the caches between frames, as the live loop's other work does
    rows = []
    for crop, b in GRID:
        reg = Register(m.mean_image, crop=(crop, crop), downsample=b)
        out = reg.out_spec.empty()
        est, ts = np.empty((frames, 2)), []
        for i, f in enumerate(movie):
            junk += 1
            t0 = time.perf_counter()
            reg.process(f, out)
            ts.append(time.perf_counter() - t0)
            est[i] = reg.last_shift
        err = np.abs(est - truth)
        ints_ok = float(np.mean(np.all(np.rint(est) == np.rint(truth), axis=1)))
        rows.append({"crop": crop, "downsample": b, "fft": crop // b, "motion_abs_err_px_mean": float(err.mean()),
                     "motion_abs_err_px_max": float(err.max()), "integer_shift_as_truth": ints_ok,
                     "register_ms_p50": float(np.median(ts[20:]) * 1e3), "register_ms_p99": float(np.percentile(ts[20:], 99) * 1e3)})
        print(rows[-1], flush=True)
    json.dump({"command": "python benchmarks/register_grid.py " + " ".join(sys.argv[1:]), "frames": frames,
               "data": "Microscope(500, seed=5, 512x512, motion_px=3), poisson_spikes(2 Hz, seed=6)", "rows": rows,
               "machine": machine_info()}, open(outp, "w"), indent=1)


if __name__ == "__main__":
    main()
