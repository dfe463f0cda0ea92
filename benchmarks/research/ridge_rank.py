"""Held-out quality of the ridge decoder at several weight ranks vs full rank, on the virtual rig.

    python benchmarks/research/ridge_rank.py --json benchmarks/results/ridge_rank.json

Writes a virtual-rig dataset (`rtdecode simulate` defaults: 20 train + 4 held-out trials of 300
frames; --neurons 1000), fits ridge once at full rank as `rtdecode fit` does (last 20% of the train
trials choose the penalty, then refit on all), and truncates the same weights to each `--ranks` k by
SVD, as `ridge.fit(rank=k)` does after the identical solve. Each is scored with docs/design.md 3.3
pixel_corr on the held-out trials. Also reports the multiply-adds per frame of each product
(features x pixels at full rank; (features + pixels) x k truncated).
"""

from __future__ import annotations

import logging
import tempfile
import time

import numpy as np

from research_common import RESULTS, machine_info, parser, positive_int, script_main, write_json
from rtdecode import metrics

log = logging.getLogger(__name__)


def run(json_out, neurons: int = 1000, train_trials: int = 20, test_trials: int = 4, seed: int = 0,
        ranks=(64, 128, 256), progress=None) -> dict:
    from rtdecode.decode import ridge
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import load_trials
    from rtdecode.rig import VirtualRig

    say = progress or (lambda s: None)
    machine = machine_info()  # at the start: the tree as it was when the run began
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rtdecode-ridge-rank-") as tmp:
        VirtualRig(neurons, seed, train_trials, test_trials).write_dataset(tmp)
        ds = Dataset(tmp)
        train_ids = ds.require("train")
        nv = max(1, int(round(len(train_ids) * 0.2)))  # fit_dataset's default val_fraction
        fit_tr = load_trials(ds, train_ids[:-nv], neurons)
        val_tr = load_trials(ds, train_ids[-nv:], neurons)
        test = load_trials(ds, ds.require("oracle"), neurons)
        mask = ds.evaluation_mask()
    say(f"dataset in {time.perf_counter() - t0:.1f} s")
    src = lambda ts: (lambda: ((r, v) for r, v, _ in ts))  # noqa: E731
    t = time.perf_counter()
    full, info = ridge.fit(src(fit_tr), src(val_tr), rank=None, progress=say)
    fit_s = time.perf_counter() - t
    w = full.weights
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    features, pixels = w.shape
    rows = []
    for k in [None, *ranks]:
        if k is None:
            dec = full
        else:
            dec = ridge.RidgeDecoder(full.act_mean, full.act_std, full.basis, (u[:, :k] * sv[:k]).astype(np.float32),
                                     full.pixel_mean, full.frame_shape, full.lag_min,
                                     np.ascontiguousarray(vt[:k], np.float32))
        s = metrics.score([(dec.predict_trial(r), v) for r, v, _ in test], mask)
        rows.append({"rank": k, "pixel_corr": s["pixel_corr"], "frame_corr": s["frame_corr"],
                     "pixel_corr_full": s["pixel_corr_full"],
                     "macs_per_frame": features * pixels if k is None else (features + pixels) * k})
        say(f"rank {k}: pixel_corr {s['pixel_corr']:.4f}")
    out = {"machine": machine,
           "config": {"neurons": neurons, "train_trials": len(fit_tr), "validation_trials": len(val_tr),
                      "test_trials": len(test), "seed": seed, "features": features, "pixels": pixels,
                      "alpha": info["alpha"]},
           "fit_s": fit_s, "results": rows}
    write_json(json_out, out)
    return out


def main(argv=None, progress=False) -> int:
    p = parser("ridge_rank", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "ridge_rank.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--neurons", type=positive_int, default=1000)
    p.add_argument("--train-trials", type=positive_int, default=20)
    p.add_argument("--test-trials", type=positive_int, default=4)
    p.add_argument("--ranks", type=positive_int, nargs="+", default=[64, 128, 256])
    args = p.parse_args(argv)
    d = run(args.out, args.neurons, args.train_trials, args.test_trials, ranks=tuple(args.ranks),
            progress=(lambda s: log.info("%s", s)) if progress else None)
    for r in d["results"]:
        print(f"rank {r['rank'] or 'full'}: pixel_corr {r['pixel_corr']:.4f}  multiply-adds/frame {r['macs_per_frame']:,}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
