"""Probe: is the ridge's brightness share better chosen on out-of-fold reconstructions of every train trial
(5 interleaved folds, 60 trials) than on the last fifth of them (12 trials, what `rtdecode fit` does)?

For a dataset: ridge fitted with every brightness kept (window and penalty chosen as the default does), its
out-of-fold reconstructions of every train trial (rtdecode.decode.crossfit), and for each share in
ridge.BRIGHTNESS_KEEP the masked pixel_corr of those reconstructions after the shrinkage (which is a linear
map of the output: y - (1 - keep) * mean(y) per frame, rtdecode.decode.ridge.shrink_brightness); the oracle
trials scored at every share too, so the two rules' choices can be compared. Nothing here changes a default.

usage: PYTHONPATH=. python benchmarks/experiments/brightness_oof_probe.py --json OUT NAME=DATASET[:TRUTH] ...
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np


def shrink(frames: np.ndarray, pixel_mean: np.ndarray, keep: float) -> np.ndarray:
    y = frames.reshape(frames.shape[0], -1) - pixel_mean
    y = y - (1.0 - keep) * y.mean(1, keepdims=True)
    return (y + pixel_mean).reshape(frames.shape)


def probe(name: str, path: str, n: int, truth: str | None) -> dict:
    from rtdecode import metrics
    from rtdecode.decode import crossfit, ridge
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(path)
    mask = ds.evaluation_mask()  # what fit chooses on: the dataset's own mask, or the full frame (v1_kit)
    # the oracle is scored as v1_kit's score.py scores it: over its eval_mask (the truth folder's, never fit's)
    eval_mask = np.load(Path(truth) / "eval_mask.npy") if truth else mask
    train = ds.require("train")
    nv = max(1, int(round(len(train) * 0.2)))
    load = lambda ids: [(ds.load(i).responses[:n], ds.load(i).video) for i in ids]
    fit_t, val_t = load(train[:-nv]), load(train[-nv:])
    dec, info = ridge.fit(lambda: iter(fit_t), lambda: iter(val_t), windows=ridge.WINDOWS, brightness_keep=(1.0,),
                          mask=mask)
    every = fit_t + val_t
    oof = crossfit.out_of_fold(every, dec, info["alpha"], 1.0, 5, lambda d, r: d.predict_trial(r))
    test = [(ds.load(i).responses[:n], ds.load(i).video) for i in ds.require("oracle")]
    test_pred = [dec.predict_trial(r) for r, _ in test]
    pm = dec.pixel_mean
    row = {"name": name, "neurons": n, "window": [dec.lag_min, dec.basis.shape[0]], "alpha": info["alpha"],
           "oof_all": {}, "oof_last_fifth": {}, "oracle": {}}
    for keep in ridge.BRIGHTNESS_KEEP:
        row["oof_all"][keep] = metrics.score([(shrink(p, pm, keep), v) for p, (_, v) in zip(oof, every)], mask)["pixel_corr"]
        row["oof_last_fifth"][keep] = metrics.score([(shrink(p, pm, keep), v) for p, (_, v) in
                                                     zip(oof[-nv:], every[-nv:])], mask)["pixel_corr"]
        row["oracle"][keep] = metrics.score([(shrink(p, pm, keep), v) for p, (_, v) in zip(test_pred, test)],
                                            eval_mask)["pixel_corr"]
    for rule in ("oof_all", "oof_last_fifth"):
        k = max(row[rule], key=row[rule].get)
        row[f"chosen_{rule}"] = k
        row[f"oracle_at_{rule}"] = row["oracle"][k]
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", nargs="+", help="NAME=DATASET[:TRUTH] (TRUTH: a folder with eval_mask.npy, v1_kit's)")
    ap.add_argument("--neurons", type=int, default=1000)
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    out = Path(a.json)
    doc = json.loads(out.read_text()) if out.is_file() else {"rows": [], "runs": []}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    doc["runs"].append({"command": "python benchmarks/experiments/brightness_oof_probe.py " + " ".join(a.data)
                        + f" --neurons {a.neurons} --json {a.json}", "commit": commit,
                        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    for item in a.data:
        name, path = item.split("=", 1)
        path, _, truth = path.partition(":")
        row = probe(name, path, a.neurons, truth or None)
        doc["rows"].append(row)
        print(json.dumps({k: row[k] for k in ("name", "chosen_oof_all", "oracle_at_oof_all", "chosen_oof_last_fifth",
                                                "oracle_at_oof_last_fifth")}), {k: round(v, 4) for k, v in row["oracle"].items()},
              flush=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
