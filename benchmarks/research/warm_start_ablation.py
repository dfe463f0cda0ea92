"""Does the inverse's warm start help the amortized decoder? The ablation, over several seeds.

One encoder, one set of inverse targets (the calibration trials inverted) and one set of
encoder-synthesised pairs are made once; then, for each seed, two amortized networks are trained
with the same total steps and the same data:
  warm     inverse targets first (steps[0]), then true frames + synthetic pairs (steps[1]);
  scratch  true frames + synthetic pairs for steps[0] + steps[1].
Each is scored with docs/design.md 3.3 pixel_corr on the dataset's held-out (oracle) trials.

    python benchmarks/research/warm_start_ablation.py /work/data/rig4000 --neurons 1000 --seeds 5

Writes benchmarks/results/warm_start_ablation.json.
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
import torch

from research_common import RESULTS, parser, script_main, write_json
from rtdecode import metrics
from rtdecode.offline.dataset import Dataset
from rtdecode.decode import amortized as am
from rtdecode.decode import encoder as E
from rtdecode.decode.inverse import InverseConfig, invert
from rtdecode.decode.pipeline import make_and_phases, synth_pairs
from rtdecode.offline.fit import load_trials


def main(argv=None, progress=False) -> int:
    p = parser("warm_start_ablation", __doc__)
    p.add_argument("dataset")
    p.add_argument("--neurons", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--encoder-steps", type=int, default=400)
    p.add_argument("--inverse-iterations", type=int, default=20)
    p.add_argument("--stride", type=int, default=16)
    p.add_argument("--inverse-trials", type=int, default=8)
    p.add_argument("--synth-movies", type=int, default=40)
    p.add_argument("--amortized-steps", type=int, nargs=2, default=[1200, 1200])
    p.add_argument("--out", default=str(RESULTS / "warm_start_ablation.json"), help="JSON file to write (default %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    ds = Dataset(args.dataset)
    train_ids = ds.require("train")
    nv = max(1, round(0.2 * len(train_ids)))  # the split decoder_report uses
    n = args.neurons
    train = load_trials(ds, train_ids[:-nv], n)
    val = load_trials(ds, train_ids[-nv:], n)
    test = load_trials(ds, ds.require("oracle"), n)
    mask = ds.evaluation_mask()
    res = {"command": "python benchmarks/research/warm_start_ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
           "neurons": n, "train_trials": len(train), "val_trials": len(val), "test_trials": len(test)}

    t0 = time.perf_counter()
    td = lambda ts: E.TrialData([t[1] for t in ts], [t[2] for t in ts], [t[0] for t in ts])  # noqa: E731
    encoder, info = E.train_encoder(td(train), td(val), steps=args.encoder_steps, progress=True)
    res["encoder_val_corr"] = info["val_corr"]
    emask = encoder.population_mask()
    cfg = InverseConfig(iterations=args.inverse_iterations, stride=args.stride)
    inv_ids = list(range(min(args.inverse_trials, len(train))))
    inv_targets = [invert([encoder], train[i][0], train[i][2], mask=emask, cfg=cfg)[0] for i in inv_ids]
    synth = synth_pairs([encoder], [t[2] for t in train], args.synth_movies, 300, 0) if args.synth_movies else []
    res["shared_setup_s"] = round(time.perf_counter() - t0, 1)
    res["inverse_targets_pixel_corr"] = float(metrics.score(
        [(r, train[i][1]) for i, r in zip(inv_ids, inv_targets)], mask)["pixel_corr"])

    vals = ([t[0] for t in val], [t[1] for t in val])
    runs = {"warm": [], "scratch": []}
    for seed in range(args.seeds):
        for kind in ("warm", "scratch"):
            net, phases = make_and_phases(n, 8, 0, ds.frame_shape, am.AmortizedConfig(), train, inv_ids, inv_targets,
                                          synth, tuple(args.amortized_steps), warm=kind == "warm")
            am.train_amortized(net, phases, seed=seed, val=vals, progress=True)
            s = metrics.score([(am.predict_trial(net, t[0], 0), t[1]) for t in test], mask)["pixel_corr"]
            runs[kind].append(round(float(s), 4))
            print(kind, seed, runs[kind][-1], flush=True)
    res["pixel_corr"] = runs
    d = np.array(runs["warm"]) - np.array(runs["scratch"])
    res["warm_minus_scratch"] = {"per_seed": [round(float(x), 4) for x in d], "mean": round(float(d.mean()), 4),
                                 "sd": round(float(d.std(ddof=1)), 4) if len(d) > 1 else None}
    write_json(args.out, res)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    script_main(main)
