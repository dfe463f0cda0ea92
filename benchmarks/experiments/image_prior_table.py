"""Linear vs amortized (image prior) on two simulators, paired per held-out trial.

For every dataset given (a folder in the Sensorium layout; for ../shared/v1_kit datasets the
matching `--truth` folder holds the evaluation mask, used for scoring only, never by the fit):
`fit_dataset(method="amortized", encoder_steps=0)` (what `rtdecode fit --method amortized
--encoder-steps 0` runs), then the oracle trials are decoded twice with the same model: by its
linear path alone (the ridge fitted on every train trial: what `--method ridge` writes) and by the
whole network. Scores: DESIGN 3.3 pixel_corr per trial, the paired gain, its standard error.

usage: python benchmarks/experiments/image_prior_table.py --json OUT.json \
           --data NAME=DATASET[:TRUTH] [NAME=DATASET[:TRUTH] ...] [--neurons K] [--models DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from rtdecode import metrics
    from rtdecode import decode
    from rtdecode.decode import image_prior as ip
    from rtdecode.decode.amortized import windows_of_trial
    from rtdecode.decode.ridge import raw_fill
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import fit_dataset

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--data", nargs="+", required=True, help="NAME=DATASET or NAME=DATASET:TRUTH")
    ap.add_argument("--neurons", type=int, default=None, help="first K neurons (default: all)")
    ap.add_argument("--models", default="/tmp/image_prior_models")
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    out = {"command": " ".join([sys.executable] + sys.argv),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "dirty": bool(subprocess.run(["git", "status", "--porcelain", "rtdecode"], capture_output=True,
                                        text=True).stdout.strip()),
           "machine": f"{platform.machine()} {os.cpu_count()} cores", "torch": torch.__version__, "rows": []}
    if Path(a.json).is_file():
        out["rows"] = json.loads(Path(a.json).read_text())["rows"]
    done = {(r["name"], r["neurons"]) for r in out["rows"]}
    for spec in a.data:
        name, _, paths = spec.partition("=")
        dataset, _, truth = paths.partition(":")
        ds = Dataset(dataset)
        n = a.neurons or ds.n_neurons
        if (name, n) in done:
            continue
        mask = np.load(Path(truth) / "eval_mask.npy").astype(bool) if truth else ds.evaluation_mask()
        model = Path(a.models) / f"{name}_n{n}"
        t0 = time.perf_counter()
        kw = {"amortized_cfg": ip.ImagePriorConfig(steps=a.steps)} if a.steps else {}
        card = fit_dataset(dataset, model, method="amortized", neurons_subset=n, encoder_steps=0, progress=False, **kw)
        fit_s = time.perf_counter() - t0
        _, dec = decode.load(model)
        net = dec.net
        lin, full = [], []
        for i in ds.require("oracle"):
            tr = ds.load(i)
            with torch.no_grad():
                rec = dec.predict_trial(tr.responses[:n])
                fill = raw_fill(net.act_mean[:, 0].numpy(), float(net.act_scale[0]))
                w = torch.from_numpy(windows_of_trial(tr.responses[:n].astype(np.float32), net.lag_min, net.bins, fill))
                centre = torch.cat([net.linear_clip(w[s:s + 256])[:, net.cfg.back] for s in range(0, len(w), 256)])
            lin.append((centre.numpy(), tr.video))
            full.append((rec, tr.video))
        sl, sf = metrics.score(lin, mask), metrics.score(full, mask)
        pl = np.array([t["pixel_corr"] for t in sl["per_trial"]])
        pf = np.array([t["pixel_corr"] for t in sf["per_trial"]])
        g = pf - pl
        am = card.training["amortized"]
        row = {"name": name, "dataset": str(Path(dataset).resolve()), "neurons": n, "fit_seconds": fit_s,
               "linear": float(pl.mean()), "amortized": float(pf.mean()), "gain": float(g.mean()),
               "gain_se": float(g.std(ddof=1) / np.sqrt(len(g))), "trials_up": int((g > 0).sum()), "trials": len(g),
               "linear_full": sl["pixel_corr_full"], "amortized_full": sf["pixel_corr_full"],
               "per_trial_linear": pl.tolist(), "per_trial_amortized": pf.tolist(),
               "best_step": am["best_step"], "val_history": am["history"], "ridge_alpha": am["ridge"]["alpha"],
               "ridge_brightness_keep": am["ridge"]["brightness_keep"]}
        out["rows"].append(row)
        print(f"{name} n={n}: linear {row['linear']:.4f} amortized {row['amortized']:.4f} gain {row['gain']:+.4f} "
              f"+- {row['gain_se']:.4f} ({row['trials_up']}/{row['trials']} up), best step {row['best_step']}, "
              f"fit {fit_s:.0f} s", flush=True)
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
