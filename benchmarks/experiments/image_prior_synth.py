"""Issue #24 item 3: the image prior's U-Net pre-trained on synthetic pairs (a research probe).

Per dataset (first `--neurons` neurons): the dynamic encoder is trained on the fit trials (the last
fifth of the train trials validating, as `rtdecode fit`) and cached; the ridge and its cross-fitted
linear frames come from image_prior_explore.py's cache (`--oof-cache`, computed by
`fit_image_prior` exactly as `rtdecode fit --method amortized` does). Synthetic pairs: procedural
movies (rtdecode.stimuli.procedural, no photographs) -> encoder -> calibration-residual noise
(rtdecode.decode.synthetic) -> the live ridge -> linear frames. Variants, each validated on the
validation trials as the product does (step 0 = ridge competes) and scored on the oracle trials
paired with ridge:
  unet      the U-Net on the out-of-fold pairs (today's default)
  pre_only  the U-Net after pre-training on synthetic pairs only (no gate; its validation reported)
  pre_ft    pre-trained, then trained on the out-of-fold pairs (gate as today)
The oracle trials choose nothing in the product; here they compare variants on the choosing seeds
(0 and 1), so any default chosen from this table must be confirmed on other seeds.

usage: python benchmarks/experiments/image_prior_synth.py --stage encoder|pairs --json OUT \
           --data NAME=DATASET[:TRUTH] ... [--neurons 1000] [--encoder-steps 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from image_prior_explore import _pad, score_net  # this folder's script

CACHE = Path("/work/res/synth_cache")
OOF_CACHE = Path("/work/res/ip_cache")  # image_prior_explore.py's (ridge, out-of-fold frames, oracle frames)
PAD = 8  # linear frames cached beyond each trial's ends (image_prior_explore.PAD)


def split(ds):
    train = ds.require("train")
    nv = max(1, int(round(len(train) * 0.2)))  # as rtdecode fit: the last fifth validates
    return train[:-nv], train[-nv:]


def encoder_of(name, dataset, n, steps):
    """The encoder trained on the fit trials (cached): (encoder, info)."""
    from rtdecode.decode import encoder as enc
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import load_trials

    path = CACHE / f"{name}_n{n}_enc{steps}.npz"
    ds = Dataset(dataset)
    if not path.is_file():
        fit_ids, val_ids = split(ds)
        trials, val = load_trials(ds, fit_ids, n), load_trials(ds, val_ids, n)
        tr = enc.TrialData([t[1] for t in trials], [t[2] for t in trials], [t[0] for t in trials])
        va = enc.TrialData([t[1] for t in val], [t[2] for t in val], [t[0] for t in val])
        t0 = time.perf_counter()
        encs, infos = enc.train_ensemble(tr, va, 1, steps=steps, frame_shape=ds.frame_shape, seed=0)
        secs = time.perf_counter() - t0
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(path, info=json.dumps({**infos[0], "seconds": secs}), **enc.state_arrays(encs[0], "encoder0."))
        print(f"{name}: encoder {steps} steps, validation corr {infos[0]['val_corr']:.4f}, {secs:.0f} s", flush=True)
    z = dict(np.load(path))
    info = json.loads(str(z.pop("info")))
    return enc.from_arrays(z, "encoder0.", n, ds.frame_shape, info["config"]), info


def oof_of(name, n):
    """image_prior_explore.py's cache: the live ridge, out-of-fold frames (PAD each side) of the fit +
    validation trials, the oracle trials' linear frames and videos."""
    path = OOF_CACHE / f"{name}_n{n}.npz"
    if not path.is_file():
        raise SystemExit(f"{path}: run benchmarks/experiments/image_prior_explore.py --neurons {n} first")
    return dict(np.load(path))


def ridge_of(z, frame_shape):
    from rtdecode.decode.ridge import RidgeDecoder

    return RidgeDecoder(z["ridge.act_mean"], z["ridge.act_std"], z["ridge.basis"], z["ridge.weights"],
                        z["ridge.pixel_mean"], tuple(frame_shape), int(z["lag_min"]), z.get("ridge.w_out"),
                        float(z["ridge.act_scale"][0]) if "ridge.act_scale" in z else 0.0)


def movies_of(name, k, frames, mean, std):
    from rtdecode.stimuli import procedural

    path = CACHE / f"{name}_movies{k}x{frames}.npy"
    if not path.is_file():
        t0 = time.perf_counter()
        np.save(path, np.stack(procedural.movies(k, frames, seed=0, mean=mean, std=std)))
        print(f"{name}: {k} procedural movies in {time.perf_counter() - t0:.0f} s", flush=True)
    return list(np.load(path))


def run_dataset(name, dataset, truth, a, out):
    from rtdecode import metrics
    from rtdecode.decode import image_prior as ip
    from rtdecode.decode import synthetic
    from rtdecode.offline.dataset import Dataset
    from rtdecode.offline.fit import load_trials
    from rtdecode.stimuli import procedural

    n = a.neurons
    ds = Dataset(dataset)
    model, enc_info = encoder_of(name, dataset, n, a.encoder_steps)
    z = oof_of(name, n)
    nf, nv, nt = int(z["n_fit"]), int(z["n_val"]), int(z["n_test"])
    mask = np.load(Path(truth) / "eval_mask.npy").astype(bool) if truth else ds.evaluation_mask()
    val_mask = None if truth else mask  # v1_kit datasets carry no mask: validation over the full frame
    dec = ridge_of(z, ds.frame_shape)
    fit_ids, _ = split(ds)
    trials = load_trials(ds, fit_ids, n)
    assert len(trials) == nf
    rec = {"name": name, "dataset": dataset, "neurons": n, "encoder_steps": a.encoder_steps,
           "encoder_val_corr": enc_info["val_corr"], "encoder_seconds": enc_info["seconds"],
           "fit_trials": nf, "val_trials": nv, "oracle_trials": nt}
    # movies: statistics of the calibration's vs the procedural ones
    mean, std = procedural.match_stats([t[1] for t in trials])
    movies = movies_of(name, a.movies, a.frames, mean, std)
    t0 = time.perf_counter()
    procedural.movies(1, a.frames, seed=99, mean=mean, std=std)
    rec["movie_seconds_each"] = time.perf_counter() - t0

    def mstats(vs):
        return {"mean": float(np.mean([v.mean() for v in vs])), "std": float(np.mean([v.std() for v in vs])),
                "spectrum_slope_median": float(np.median([procedural.spectrum_slope(v) for v in vs])),
                "spectrum_slope_iqr": [float(q) for q in np.percentile([procedural.spectrum_slope(v) for v in vs],
                                                                        [25, 75])],
                "frame_diff_median": float(np.median([np.abs(np.diff(v, axis=0)).mean() for v in vs]))}

    rec["movies"] = {"calibration": mstats([t[1] for t in trials]), "procedural": mstats(movies)}
    print(f"{name}: movies {json.dumps(rec['movies'])}", flush=True)
    # noise models: synthetic activity statistics vs the calibration's
    t0 = time.perf_counter()
    resid = synthetic.residuals([model], trials)
    sd = np.concatenate(resid).std(0)
    calib_acts = [t[0] for t in trials]
    rec["noise_check"] = {}
    for noise in synthetic.NOISES:
        rng = np.random.default_rng(5)
        acts = [synthetic.synth_activity([model], m, trials, resid, rng, noise, sd) for m in movies[:12]]
        rec["noise_check"][noise] = synthetic.compare_stats(acts, calib_acts)
    rng = np.random.default_rng(5)
    rec["noise_check"]["rate_only"] = synthetic.compare_stats(
        [synthetic.encoder_rate([model], m, synthetic._fit_len(trials[0][2], len(m))).T for m in movies[:12]], calib_acts)
    print(f"{name}: noise {json.dumps(rec['noise_check'])}", flush=True)
    pairs_syn = synthetic.synth_pairs(dec, [model], trials, movies, PAD, PAD, seed=0, noise=a.noise, resid=resid)
    rec["synth_seconds"] = time.perf_counter() - t0
    rec["noise"] = a.noise
    # the synthetic pairs' own linear quality (ridge on the simulator's activity vs the procedural movie)
    rec["synth_linear_pixel_corr"] = metrics.score([(_pad(f, 0, 0), m) for f, m in pairs_syn[:12]], mask)["pixel_corr"]

    cfg0 = ip.ImagePriorConfig(**({} if a.steps is None else {"steps": a.steps, "eval_every": max(1, a.steps // 6)}))
    b, f = cfg0.back, cfg0.fwd
    pairs = [(_pad(z[f"oof{i}"], b, f), z[f"video{i}"]) for i in range(nf + nv)]
    syn = [(_pad(fr, b, f), m) for fr, m in pairs_syn]
    ridge_bins, nb = z["ridge.basis"].shape
    rank = z["ridge.weights"].shape[1]

    def fresh(cfg):
        torch.manual_seed(0)
        net = ip.ImagePriorNet(n, ridge_bins, nb, rank, tuple(ds.frame_shape), cfg)
        net.set_linear(dec)
        return net

    def row(variant, net, info, secs):
        pl, pf = score_net(net, z, nt, b, f, mask)
        g = pf - pl
        r = {"variant": variant, "linear": float(pl.mean()), "amortized": float(pf.mean()), "gain": float(g.mean()),
             "gain_se": float(g.std(ddof=1) / np.sqrt(len(g))), "trials_up": int((g > 0).sum()),
             "best_step": info.get("best_step"), "kept": info.get("kept"), "history": info.get("history"),
             "train_seconds": secs}
        print(f"{name} {variant}: linear {r['linear']:.4f} -> {r['amortized']:.4f} ({r['gain']:+.4f} +- "
              f"{r['gain_se']:.4f}, {r['trials_up']}/{nt} up), kept {r['kept']} step {r['best_step']}, "
              f"val {[(h['step'], round(h['val_pixel_corr'], 4)) for h in info.get('history', [])]}, {secs:.0f} s",
              flush=True)
        return r

    rec["rows"] = []
    # 1. today's U-Net (or its row from an image_prior_explore.py JSON of the same cache and settings:
    # the same seeded training, so the same numbers; kit_s0 here reproduced its row to the last digit)
    old = [r for src in a.unet_from for r in json.loads(Path(src).read_text())["rows"]
           if r["name"] == name and json.loads(r["variant"]) == {"steps": 600, "lr": 0.0005}] if a.steps is None else []
    if old:
        r = old[0]
        rec["rows"].append({"variant": "unet", **{k: r[k] for k in ("linear", "amortized", "gain", "gain_se", "trials_up",
                                                                     "best_step", "history", "train_seconds")},
                            "kept": "trained" if r["best_step"] else "linear", "from": a.unet_from})
        print(f"{name} unet: from {a.unet_from}: gain {r['gain']:+.4f}, kept step {r['best_step']}", flush=True)
    else:
        net = fresh(cfg0)
        t0 = time.perf_counter()
        info = ip.train(net, pairs[:nf], pairs[nf:], val_mask=val_mask, say=lambda s: None)
        rec["rows"].append(row("unet", net, info, time.perf_counter() - t0))
    # 2. pre-trained only (synthetic pairs, no calibration pairs; not gated: what pre-training alone learned)
    cfg = ip.ImagePriorConfig(**{**asdict(cfg0), "synth_movies": len(movies), "pretrain_steps": a.pretrain_steps})
    net = fresh(cfg)
    t0 = time.perf_counter()
    pre_info = ip.pretrain(net, syn, a.pretrain_steps, seed=0, say=lambda s: None)
    pre_secs = time.perf_counter() - t0
    pre_state = {k: v.clone() for k, v in net.unet.state_dict().items()}
    vpreds = []
    with torch.no_grad():
        for fr, v in pairs[nf:]:
            c = torch.from_numpy(ip.clips(fr, b, f))
            vpreds.append((torch.cat([net.refine(c[s:s + 256]) for s in range(0, len(c), 256)]).numpy(), v))
    vlin = [(ip.clips(fr, b, f)[:, b], v) for fr, v in pairs[nf:]]
    pre_row = row("pre_only", net, {"history": [{"step": "linear", "val_pixel_corr": metrics.score(vlin, val_mask)["pixel_corr"]},
                                                {"step": "pretrained", "val_pixel_corr": metrics.score(vpreds, val_mask)["pixel_corr"]}],
                                    **pre_info}, pre_secs)
    rec["rows"].append(pre_row)
    # 3. pre-trained then trained on the calibration pairs (the product's path: ip.train with pretrain_pairs).
    # Pre-training is deterministic (seeded, no dropout), so the state of step 2 stands in for recomputing it.
    orig = ip.pretrain

    def replay(net_, pairs_, steps, seed=0, say=None):
        net_.unet.load_state_dict(pre_state)
        net_.eval()
        return dict(pre_info)

    ip.pretrain = replay
    try:
        net = fresh(cfg)
        t0 = time.perf_counter()
        info = ip.train(net, pairs[:nf], pairs[nf:], val_mask=val_mask, say=lambda s: None, pretrain_pairs=syn)
    finally:
        ip.pretrain = orig
    rec["rows"].append(row("pre_ft", net, info, time.perf_counter() - t0 + pre_secs))
    out["datasets"] = [d for d in out["datasets"] if d["name"] != name] + [rec]
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage", choices=["encoder", "pairs"], default="pairs")
    ap.add_argument("--json", default=None)
    ap.add_argument("--data", nargs="+", required=True)
    ap.add_argument("--neurons", type=int, default=1000)
    ap.add_argument("--encoder-steps", type=int, default=1000)
    ap.add_argument("--movies", type=int, default=60)
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--pretrain-steps", type=int, default=600)
    ap.add_argument("--noise", default="bootstrap")
    ap.add_argument("--unet-from", nargs="*", default=[],
                    help="image_prior_explore.py JSONs whose default-settings rows stand in for the 'unet' variant")
    ap.add_argument("--steps", type=int, default=None, help="the U-Net's steps (default: ImagePriorConfig's)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    out = {"command": " ".join([sys.executable] + sys.argv),
           "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip(),
           "dirty": bool(subprocess.run(["git", "status", "--porcelain", "rtdecode"], capture_output=True,
                                        text=True).stdout.strip()),
           "oof_cache": str(OOF_CACHE), "datasets": []}
    if a.json and Path(a.json).is_file():
        out["datasets"] = json.loads(Path(a.json).read_text())["datasets"]
    for spec in a.data:
        name, _, paths = spec.partition("=")
        dataset, _, truth = paths.partition(":")
        if a.stage == "encoder":
            encoder_of(name, dataset, a.neurons, a.encoder_steps)
            continue
        run_dataset(name, dataset, truth, a, out)


if __name__ == "__main__":
    main()
