"""Decoders on spike counts per frame (sorted units), on two simulators: the plain independent ridge
(../shared/v1_kit/ridge_baseline.py), `rtdecode fit --method ridge` and `--method amortized` (the image
prior, `--encoder-steps 0`: the encoder only serves reconstruct --method warm|inverse), at several
neuron counts (the first K units of a 4,000-unit dataset).

Datasets (4,000 units, 60 train + 10 oracle trials, 30 Hz, 36x64):
  kit_spk{s}  python ../shared/v1_kit/virtual_v1.py --out /work/spk2/kit_spk{s} --truth /work/spk2/kit_spk{s}_truth
                  --neurons 4000 --seed {s} --modality spikes
  rig_spk{s}  rtdecode simulate --out /work/spk2/rig_spk{s} --neurons 4000 --train-trials 60 --test-trials 10
                  --seed {s} --modality spikes   (the project's realistic rig; its meta/evaluation_mask.npy is the
                  scorer's eval_mask, copied to /work/spk2/rig_spk{s}_truth)
  kit_ca{s}, rig_ca{s}: the same with calcium (no --modality), where generated.
Every reconstruction is scored by v1_kit's score.py: corr_masked, Bauer's masked pixel correlation, mean over the 10
oracle trials (per trial kept). Seeds 0-4 choose, 5-9 report (../shared/v1_kit/README.md).

usage: PYTHONPATH=. nice -n 10 python benchmarks/experiments/spikes_table.py --sets kit_spk rig_spk --seeds 5 6 7 \
           --neurons 300 1000 4000 --methods plain ridge amortized [--out benchmarks/results/spikes_table.json]
Results merge into --out; a (dataset, neurons, method) already there is skipped unless --force.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ridge_modality import scorer  # v1_kit's score.py, loaded once (this folder's script)

KIT = Path("/work/shared/v1_kit")
DATA = Path("/work/spk2")
METHODS = {  # fit_dataset options of each rtdecode method: the defaults a user gets
    "ridge": dict(method="ridge"),
    "amortized": dict(method="amortized", encoder_steps=0),
    # the default fit (the encoder trained too), reconstructed twice: `amortized` and `warm` (the inverse
    # started from the amortized frames: the refined column); the second is stored under the key .../warm
    "amortized_enc": dict(method="amortized"),
    "ridge_compress0": dict(method="ridge", compress=0.0),
    "ridge_keepbright": dict(method="ridge", brightness_keep=(1.0,)),  # no brightness shrinkage
    # fit's default on spike counts before 4acb096: the brightness share chosen on validation
    "ridge_shrink": dict(method="ridge", brightness_keep=(0.0, 0.25, 0.5, 0.75, 1.0)),
}


def dataset(name: str) -> tuple[Path, Path]:
    """(dataset folder, truth folder holding eval_mask.npy)."""
    d = DATA / name
    truth = DATA / f"{name}_truth"
    if name.startswith("rig") and not (truth / "eval_mask.npy").is_file():
        truth.mkdir(parents=True, exist_ok=True)
        shutil.copy(d / "meta" / "evaluation_mask.npy", truth / "eval_mask.npy")
    if not (d / "done").is_file():
        raise SystemExit(f"{d} is not complete (no 'done' marker): generate it first (see --help)")
    return d, truth


def run(method: str, d: Path, truth: Path, n: int, tmp: Path) -> dict:
    t0 = time.time()
    recon = tmp / "recon"
    shutil.rmtree(recon, ignore_errors=True)
    entry: dict = {}
    if method == "plain":
        out = subprocess.run([sys.executable, str(KIT / "ridge_baseline.py"), "--dataset", str(d), "--out", str(recon),
                              "--neurons-subset", str(n)], cwd=KIT, capture_output=True, text=True, check=True)
        entry["log"] = out.stdout.strip().splitlines()[-1]
    else:
        from rtdecode.offline.fit import fit_dataset
        from rtdecode.offline.reconstruct import reconstruct

        opts = dict(METHODS[method])
        model = tmp / "model"
        shutil.rmtree(model, ignore_errors=True)
        card = fit_dataset(d, model, opts.pop("method"), n, progress=False, **opts)
        reconstruct(model, d, recon, progress=False)
        if method == "amortized_enc":
            t1 = time.time()
            reconstruct(model, d, tmp / "warm", method="warm", progress=False)
            res, errors = scorer()(str(d), str(truth), str(tmp / "warm"))
            if errors:
                raise RuntimeError(f"warm on {d}: {errors[:3]}")
            entry["warm"] = {"options": {"reconstruct": "warm", "model": "amortized_enc"},
                             "corr_masked": res["corr_masked"], "corr_full": res["corr_full"],
                             "per_trial": [v["corr_masked"] for v in res["trials"].values()],
                             "seconds": round(time.time() - t1, 1)}
            shutil.rmtree(tmp / "warm", ignore_errors=True)
        tr = card.training
        entry["options"] = METHODS[method]
        entry["window"] = [card.window.lag_min, card.window.bins]
        if card.method == "ridge":
            entry["fit"] = {k: tr.get(k) for k in ("alpha", "brightness_keep", "compress", "act_scale", "rank")}
        else:
            a = tr["amortized"]
            choices = a["ridge"].get("choice_search") or []
            best = max(choices, key=lambda c: c["val_pixel_corr"]) if choices else None
            entry["fit"] = {"ridge_window": [best["lag_min"], best["bins"]] if best else None,
                            "best_step": a.get("best_step"), "val_pixel_corr_linear": a.get("val_pixel_corr_linear"),
                            "val_pixel_corr": a.get("val_pixel_corr"), "fit_seconds": tr.get("fit_seconds")}
    res, errors = scorer()(str(d), str(truth), str(recon))
    if errors:
        raise RuntimeError(f"{method} on {d}: {errors[:3]}")
    entry.update(corr_masked=res["corr_masked"], corr_full=res["corr_full"],
                 per_trial=[v["corr_masked"] for v in res["trials"].values()], seconds=round(time.time() - t0, 1))
    return entry


def report(results: dict, sets, seeds, neurons, methods) -> str:
    """Markdown: per simulator and unit count, each method's corr_masked mean +- sd over the seeds that
    have it, and each rtdecode method minus the plain ridge, paired per seed."""
    import numpy as np

    vs_ridge = [m for m in methods if m not in ("plain", "ridge")] if "ridge" in methods else []
    # `warm` is stored by the amortized_enc runs; `--methods ... amortized_enc warm` reports both
    lines = ["| data | units | seeds | " + " | ".join(methods) + " | " +
             " | ".join(f"{m} - plain" for m in methods if m != "plain") +
             "".join(f" | {m} - ridge (trials up)" for m in vs_ridge) + " |",
             "|---" * (3 + 2 * len(methods) - 1 + len(vs_ridge)) + "|"]
    for s in sets:
        for n in neurons:
            have = [seed for seed in seeds if all(f"{s}{seed}/n{n}/{m}" in results for m in methods)]
            if not have:
                continue
            val = {m: np.array([results[f"{s}{seed}/n{n}/{m}"]["corr_masked"] for seed in have]) for m in methods}
            cell = lambda x: f"{x.mean():.3f} +- {x.std(ddof=1):.3f}" if len(x) > 1 else f"{x.mean():.3f}"
            diff = [cell(val[m] - val["plain"]) for m in methods if m != "plain" and "plain" in val]
            for m in vs_ridge:  # paired per oracle trial: how many went up by more than 1e-4 (ties: neither)
                up = sum(int(np.sum(np.array(results[f"{s}{seed}/n{n}/{m}"]["per_trial"]) >
                                    np.array(results[f"{s}{seed}/n{n}/ridge"]["per_trial"]) + 1e-4)) for seed in have)
                tot = sum(len(results[f"{s}{seed}/n{n}/ridge"]["per_trial"]) for seed in have)
                diff.append(f"{cell(val[m] - val['ridge'])} ({up}/{tot})")
            lines.append(f"| {s} | {n} | {','.join(map(str, have))} | " + " | ".join(cell(val[m]) for m in methods)
                         + " | " + " | ".join(diff) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["kit_spk", "rig_spk"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[5, 6, 7])
    ap.add_argument("--neurons", nargs="+", type=int, default=[300, 1000, 4000])
    ap.add_argument("--methods", nargs="+", default=["plain", "ridge", "amortized"])
    ap.add_argument("--out", default="benchmarks/results/spikes_table.json")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--report", action="store_true", help="print the table of --out (mean, sd over seeds) and exit")
    a = ap.parse_args()
    if a.report:
        print(report(json.loads(Path(a.out).read_text())["results"], a.sets, a.seeds, a.neurons, a.methods))
        return
    a.methods = [m for m in a.methods if m != "warm"] if not a.report else a.methods
    for m in a.methods:
        if m != "plain" and m not in METHODS:
            ap.error(f"unknown method {m}; valid: plain, {', '.join(METHODS)}")
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.is_file() else {"results": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    rev = commit + ("-dirty" if dirty else "")
    doc.setdefault("runs", []).append({"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                                       "commit": rev, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    doc["metric"] = "v1_kit score.py corr_masked, mean over the 10 oracle trials"
    doc["methods"] = {"plain": "ridge_baseline.py --neurons-subset K", **METHODS}
    with tempfile.TemporaryDirectory(prefix="spikes_table_", dir=DATA) as tmp:
        for n in a.neurons:
            for s in a.sets:
                for seed in a.seeds:
                    name = f"{s}{seed}"
                    d, truth = dataset(name)
                    for m in a.methods:
                        key = f"{name}/n{n}/{m}"
                        if key in doc["results"] and not a.force:
                            continue
                        e = run(m, d, truth, n, Path(tmp))
                        e["commit"] = rev
                        if "warm" in e:
                            doc["results"][f"{name}/n{n}/warm"] = {**e.pop("warm"), "commit": rev}
                        doc["results"][key] = e
                        print(f"{key:32s} {e['corr_masked']:.4f}  {e.get('window', '')} {e.get('fit', '')}  "
                              f"{e['seconds']}s", flush=True)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_text(json.dumps(doc, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
