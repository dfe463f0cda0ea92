"""How far above ridge can a feed-forward decoder get on the virtual rig? An upper-bound experiment.

The amortized decoder's two advantages over ridge are its nonlinearity and the extra training pairs
an encoder can synthesise. This experiment gives it the best possible version of the second: the
extra pairs come from the rig's *ground-truth* population (a perfect encoder), so any shortfall is
not the learned encoder's fault. Methods, all scored with docs/design.md 3.3 pixel_corr on the dataset's
held-out (oracle) trials:

  ridge            the live ridge decoder, fitted on the dataset's calibration trials
  ridge+oracle     the same, with the ground-truth-synthesised trials added to its training set
  amortized        the amortized network from scratch on the calibration trials
  amortized+oracle the same network with the ground-truth-synthesised trials added

It also reports the encoder ceiling: the per-neuron correlation of the noise-free rates with the
held-out single-trial spikes.

    python benchmarks/research/decoder_headroom.py /work/data/rig4000 --synth-trials 200

The dataset must be one `rtdecode simulate` wrote with the given --seed (checked on trial 0).
Writes benchmarks/results/decoder_headroom.json.
"""

from __future__ import annotations

import json
import time

import numpy as np
import torch

from research_common import RESULTS, parser, script_main, write_json
from rtdecode import metrics
from rtdecode.offline.dataset import Dataset
from rtdecode.decode import amortized as am
from rtdecode.decode import ridge
from rtdecode.decode.pipeline import make_and_phases
from rtdecode.offline.fit import load_trials
from rtdecode.rig import VirtualRig
from rtdecode.stimuli import movies
from rtdecode.rig.population import behavior


def oracle_trials(rig: VirtualRig, n: int, frames: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(spikes (N, T), movie (T, H, W)) from the ground-truth population on train-pool movies."""
    pool = movies.TRAIN_IMAGES + movies.SYNTHETIC_KINDS
    out = []
    for k in range(n):
        rng = np.random.default_rng([seed, 991, k])
        movie = movies.make_movie(pool[int(rng.integers(len(pool)))], frames, rng)
        beh, _ = behavior(frames, rng)
        rates = rig.population.respond(movie, beh, rng)
        out.append((rig.population.spikes(rates, rng).T.copy(), movie))
    return out


def oracle_rate_corr(rig: VirtualRig, ids: list[int], n: int) -> float:
    """Mean per-neuron correlation (Sensorium metric: first 50 frames of each trial skipped) between
    the rig's noise-free rates and its single-trial spikes: the ceiling for any encoder."""
    P, S = [], []
    for i in ids:
        tr = rig.trial(i)
        P.append(rig.population.respond(tr.movie, tr.behavior, None)[50:, :n]); S.append(tr.spikes[50:, :n])
    P, S = np.concatenate(P), np.concatenate(S)
    P = (P - P.mean(0)) / np.maximum(P.std(0), 1e-9)
    S = (S - S.mean(0)) / np.maximum(S.std(0), 1e-9)
    return float((P * S).mean(0).mean())


def main(argv=None, progress=False) -> int:
    p = parser("decoder_headroom", __doc__)
    p.add_argument("dataset")
    p.add_argument("--seed", type=int, default=0, help="the seed `rtdecode simulate` used")
    p.add_argument("--neurons", type=int, default=4000)
    p.add_argument("--synth-trials", type=int, default=200)
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--methods", nargs="+", default=["ridge", "ridge+oracle", "amortized", "amortized+oracle"])
    p.add_argument("--out", default=str(RESULTS / "decoder_headroom.json"), help="JSON file to write (default %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(2)

    ds = Dataset(args.dataset)
    train_ids, test_ids = ds.require("train"), ds.require("oracle")
    n = args.neurons
    train, val, test = (load_trials(ds, ids, n) for ids in (train_ids[:-4], train_ids[-4:], test_ids))
    rig = VirtualRig(ds.n_neurons, args.seed, len(train_ids), len(test_ids), train[0][1].shape[0])
    if not np.array_equal(rig.trial(0).spikes.T[:n], ds.load(train_ids[0]).responses[:n]):
        raise SystemExit(f"{args.dataset} was not simulated with --seed {args.seed}: trial 0 differs")
    mask = ds.evaluation_mask()
    truths = [t[1] for t in test]
    result = {"dataset": args.dataset, "neurons": n, "train_trials": len(train), "val_trials": len(val),
              "test_trials": len(test), "synth_trials": args.synth_trials, "steps": args.steps, "batch": args.batch}

    t0 = time.perf_counter()
    synth = oracle_trials(rig, args.synth_trials, train[0][1].shape[0], args.seed) if args.synth_trials else []
    synth = [(a[:n], m) for a, m in synth]
    result["synth_s"] = time.perf_counter() - t0
    result["oracle_rate_corr_test"] = round(oracle_rate_corr(rig, rig.trials("oracle"), n), 4)
    print("noise-free rate vs spikes, per-neuron correlation:", result["oracle_rate_corr_test"], flush=True)

    def score(recs):
        s = metrics.score(list(zip(recs, truths)), mask)
        return {k: round(float(s[k]), 4) for k in ("pixel_corr", "frame_corr", "pixel_corr_full")}

    vsrc = lambda: ((r, v) for r, v, _ in val)  # noqa: E731
    for name, extra in (("ridge", []), ("ridge+oracle", synth)):
        if name not in args.methods or (name == "ridge+oracle" and not synth):
            continue
        t0 = time.perf_counter()
        src = lambda extra=extra: ((r, v) for r, v, _ in list(train) + [(a, m, None) for a, m in extra])  # noqa: E731
        rd, _ = ridge.fit(src, vsrc, bins=8, lag_min=0)
        result[name] = {**score([rd.predict_trial(t[0]) for t in test]), "fit_s": round(time.perf_counter() - t0, 1)}
        print(name, result[name], flush=True)

    for name, extra in (("amortized", []), ("amortized+oracle", synth)):
        if name not in args.methods or (name == "amortized+oracle" and not synth):
            continue
        t0 = time.perf_counter()
        net, phases = make_and_phases(n, 8, 0, (36, 64), am.AmortizedConfig(), train, [], [], extra,
                                      (args.steps, 0), warm=False)
        info = am.train_amortized(net, phases, batch=args.batch, val=([t[0] for t in val], [t[1] for t in val]),
                                  progress=True)
        recs = [am.predict_trial(net, t[0], 0) for t in test]
        result[name] = {**score(recs), "fit_s": round(time.perf_counter() - t0, 1),
                        "best_step": info["phases"][-1]["best_step"]}
        print(name, result[name], flush=True)

    write_json(args.out, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    script_main(main)
