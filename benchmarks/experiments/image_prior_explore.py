"""Variants of the image prior's U-Net on cached cross-fitted linear frames (a research probe).

The ridge and its cross-fitted frames are computed once per dataset (what `rtdecode fit --method
amortized` computes before training the U-Net) and cached; each variant (ImagePriorConfig fields
as JSON) then trains only the U-Net, validated on the validation trials as the product does, and
is scored on the oracle trials, paired with the linear decoder. The oracle trials choose nothing in
the product; here they compare variants, so a variant chosen from this table must be confirmed on
other seeds.

usage: python benchmarks/experiments/image_prior_explore.py --json OUT --data NAME=DATASET[:TRUTH] \
           --variants '{"steps": 600}' '{"steps": 600, "flip": false}' ... [--neurons K] [--cache DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

PAD = 8  # linear frames cached beyond each trial's ends: clips up to 8 back / 8 forward


def cached(name, dataset, n, cache):
    from rtdecode.decode import image_prior as ip
    from rtdecode.decode import pipeline
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import load_trials

    path = Path(cache) / f"{name}_n{n}.npz"
    ds = Dataset(dataset)
    if not path.is_file():
        train = ds.require("train")
        nv = max(1, int(round(len(train) * 0.2)))  # as rtdecode fit: the last fifth validates
        trials, val = load_trials(ds, train[:-nv], n), load_trials(ds, train[-nv:], n)
        stash = {}
        pipeline.fit_image_prior(trials, val, ip.ImagePriorConfig(steps=0, back=PAD, fwd=PAD), 0, 8, 0, False, print,
                                 val_mask=ds.evaluation_mask(), stash=stash)
        dec = stash["ridge"]
        test = [ds.load(i) for i in ds.require("oracle")]
        arrays = {f"ridge.{k}": v for k, v in dec.arrays().items()}
        arrays.update({f"oof{i}": f for i, f in enumerate(stash["oof_frames"])})
        arrays.update({f"video{i}": t[1] for i, t in enumerate(trials + val)})
        arrays.update({f"test{i}": ip.linear_frames(dec, t.responses[:n], PAD, PAD) for i, t in enumerate(test)})
        arrays.update({f"testvideo{i}": t.video for i, t in enumerate(test)})
        Path(cache).mkdir(parents=True, exist_ok=True)
        np.savez(path, n_fit=len(trials), n_val=len(val), n_test=len(test), lag_min=dec.lag_min, **arrays)
    z = dict(np.load(path))
    return z


def main() -> None:
    from rtdecode import metrics
    from rtdecode.decode import image_prior as ip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", required=True)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--variants", nargs="+", required=True)
    ap.add_argument("--neurons", type=int, default=None)
    ap.add_argument("--cache", default="/work/res/ip_cache")
    a = ap.parse_args()
    out = {"command": " ".join([sys.executable] + sys.argv),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "rows": []}
    if Path(a.json).is_file():
        out["rows"] = json.loads(Path(a.json).read_text())["rows"]
    done = {(r["name"], r["variant"]) for r in out["rows"]}
    for spec in a.data:
        name, _, paths = spec.partition("=")
        dataset, _, truth = paths.partition(":")
        from rtdecode.offline.dataset import Dataset

        ds = Dataset(dataset)
        n = a.neurons or ds.n_neurons
        mask = np.load(Path(truth) / "eval_mask.npy").astype(bool) if truth else ds.evaluation_mask()
        z = cached(name, dataset, n, a.cache)
        nf, nv, nt = int(z["n_fit"]), int(z["n_val"]), int(z["n_test"])
        for vs in a.variants:
            if (name, vs) in done:
                continue
            cfg = ip.ImagePriorConfig(**json.loads(vs))
            b, f = cfg.back, cfg.fwd
            pairs = [(_pad(z[f"oof{i}"], b, f), z[f"video{i}"]) for i in range(nf + nv)]
            ridge_bins, nb = z["ridge.basis"].shape
            rank = z["ridge.weights"].shape[1]
            net = ip.ImagePriorNet(n, ridge_bins, nb, rank, z["video0"].shape[1:], cfg)
            tclips = [torch.from_numpy(ip.clips(_pad(z[f"test{i}"], b, f), b, f)) for i in range(nt)]
            base_oracle = np.array([t["pixel_corr"] for t in metrics.score(
                [(c[:, b].numpy(), z[f"testvideo{i}"]) for i, c in enumerate(tclips)], mask)["per_trial"]])

            @torch.no_grad()
            def oracle_at(step, net):
                # the oracle gain of every validated step (for comparing selection rules; chooses nothing)
                net.eval()
                preds = [(torch.cat([net.refine(c[s:s + 256]) for s in range(0, len(c), 256)]).numpy(),
                          z[f"testvideo{i}"]) for i, c in enumerate(tclips)]
                g = np.array([t["pixel_corr"] for t in metrics.score(preds, mask)["per_trial"]]) - base_oracle
                return {"oracle_gain": float(g.mean()), "oracle_gain_se": float(g.std(ddof=1) / np.sqrt(len(g)))}

            torch.manual_seed(0)
            t0 = time.perf_counter()
            info = ip.train(net, pairs[:nf], pairs[nf:], val_mask=None if truth else mask, say=lambda s: None,
                            on_eval=oracle_at)
            secs = time.perf_counter() - t0
            pl, pf = score_net(net, z, nt, b, f, mask)
            g = pf - pl
            row = {"name": name, "variant": vs, "linear": float(pl.mean()), "amortized": float(pf.mean()),
                   "gain": float(g.mean()), "gain_se": float(g.std(ddof=1) / np.sqrt(len(g))),
                   "trials_up": int((g > 0).sum()), "best_step": info["best_step"], "history": info["history"],
                   "train_seconds": secs}
            out["rows"].append(row)
            print(f"{name} {vs}: linear {row['linear']:.4f} -> {row['amortized']:.4f} ({row['gain']:+.4f} +- "
                  f"{row['gain_se']:.4f}, {row['trials_up']}/{nt} up), kept step {row['best_step']}, "
                  f"val {[round(h['val_pixel_corr'], 4) for h in info['history']]}, "
                  f"oracle gain by step {[round(h['oracle_gain'], 4) for h in info['history']]}, {secs:.0f} s", flush=True)
            Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


def score_net(net, z, nt, b, f, mask):
    """Per-oracle-trial pixel_corr of the linear decoder and of `net` (clips of cached linear frames)."""
    from rtdecode import metrics
    from rtdecode.decode import image_prior as ip

    lin, full = [], []
    with torch.no_grad():
        for i in range(nt):
            c = torch.from_numpy(ip.clips(_pad(z[f"test{i}"], b, f), b, f))
            lin.append((c[:, b].numpy(), z[f"testvideo{i}"]))
            full.append((torch.cat([net.refine(c[s:s + 256]) for s in range(0, len(c), 256)]).numpy(),
                         z[f"testvideo{i}"]))
    pl = np.array([t["pixel_corr"] for t in metrics.score(lin, mask)["per_trial"]])
    pf = np.array([t["pixel_corr"] for t in metrics.score(full, mask)["per_trial"]])
    return pl, pf


def _pad(frames, back, fwd):
    """Linear frames cached with PAD frames each side -> padded by back / fwd (at most PAD)."""
    if back > PAD or fwd > PAD:
        raise SystemExit(f"the cache holds {PAD} padding frames; back/fwd at most {PAD}")
    return frames[PAD - back: len(frames) - (PAD - fwd)]


if __name__ == "__main__":
    main()
