"""rtdecode's ridge vs the plain independent ridge (../shared/v1_kit/ridge_baseline.py) on calcium and
spike counts, on two simulators: which of rtdecode's ridge choices costs it on spikes?

Datasets (1,000 neurons, 60 train + 10 oracle trials):
  kit_ca{s}   v1_kit calcium; seeds 0-2: /work/data/kit/s{s} (4,000 neurons, the first 1,000 used),
              other seeds /work/spk/kit_ca{s} (virtual_v1.py --neurons 1000 --seed s)
  kit_spk{s}  v1_kit spike counts, /work/spk/kit_spk{s} (virtual_v1.py --neurons 1000 --seed s --modality spikes)
  rig{s}      the project's realistic rig; seeds 0-2: /work/data/rig/s{s} (first 1,000 of 4,000 neurons),
              other seeds /work/spk/rig{s} (rtdecode simulate --neurons 1000 --train-trials 60 --test-trials 10)
Every reconstruction is scored with v1_kit's score.py (corr_masked: Bauer's masked pixel correlation over
the oracle trials; the rig's mask is its meta/evaluation_mask.npy, copied to a truth folder under /work/spk).

Variants 'oof', 'oof_rankfull', 'new_rankfull', 'new_valrandom', 'new_keepbright' are the defaults with one option changed
(benchmarks/results/ridge_oof_choice.json; 'new' is copied from 'oof' when both chose the same share, the
same decoder). --neurons K uses the first K neurons (results keyed NAME@K).

Variants: 'plain' is ridge_baseline.py (--neurons-subset 1000); the others are rtdecode.offline.fit.fit_dataset
with every option given explicitly ('old' = the defaults before this branch), so the numbers do not move when
the defaults do. Seeds 0-4 choose, 5-9 report. Results are merged into --out (a (dataset, variant) already
there is skipped unless --force).

usage: PYTHONPATH=. nice -n 10 python benchmarks/experiments/ridge_modality.py --sets kit_ca kit_spk rig \
           --seeds 0 1 2 --variants plain old compress0 keepbright win13 win12 rankfull valrandom
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

KIT = Path("/work/shared/v1_kit")
SPK = Path("/work/spk")
NEURONS = 1000

OLD = dict(bins=8, lag_min=0, compress=6.0, brightness_keep=(0.0, 0.25, 0.5, 0.75, 1.0), rank=128, val_split="last")
VARIANTS = {
    "old": {},
    "compress0": dict(compress=0.0),
    "keepbright": dict(brightness_keep=(1.0,)),
    "win13": dict(lag_min=-4, bins=13),      # t-4..t+8, the plain ridge's window
    "win12": dict(lag_min=-4, bins=12),      # t-4..t+7: the same latency as t..t+7
    "rankfull": dict(rank=None),
    "valrandom": dict(val_split="random"),
    "compresschoice": dict(compress=(6.0, 0.0)),
    "compresschoice_win12": dict(compress=(6.0, 0.0), lag_min=-4, bins=12),
    "compresschoice_win13": dict(compress=(6.0, 0.0), lag_min=-4, bins=13),
    "compress0_win12": dict(compress=0.0, lag_min=-4, bins=12),
    "winchoice": dict(lag_min=None, bins=None),  # the window chosen on validation among ridge.WINDOWS
    "new": "NEW",                           # the branch's defaults: fit_dataset with no options
    "oof": {"NEW": True, "brightness_choice": "oof"},  # the defaults, the brightness share chosen out of fold
    "oof_rankfull": {"NEW": True, "brightness_choice": "oof", "rank": None},
    "new_rankfull": {"NEW": True, "rank": None},
    "new_valrandom": {"NEW": True, "val_split": "random"},  # the defaults, 12 random validation trials
    "new_keepbright": {"NEW": True, "brightness_keep": (1.0,)},  # the defaults, all brightness kept
}


def dataset(name: str) -> tuple[Path, Path]:
    """(dataset folder, truth folder with eval_mask.npy)."""
    kind, seed = name.rstrip("0123456789"), int(name[len(name.rstrip("0123456789")):])
    if kind == "kit_ca":
        d = Path(f"/work/data/kit/s{seed}") if seed <= 2 else SPK / f"kit_ca{seed}"
        return d, Path(str(d) + "_truth")
    if kind == "kit_spk":
        d = SPK / f"kit_spk{seed}"
        return d, Path(str(d) + "_truth")
    if kind == "rig":
        d = Path(f"/work/data/rig/s{seed}") if seed <= 2 else SPK / f"rig{seed}"
        truth = SPK / "rig_truth" / f"s{seed}"
        if not (truth / "eval_mask.npy").is_file():
            truth.mkdir(parents=True, exist_ok=True)
            shutil.copy(d / "meta" / "evaluation_mask.npy", truth / "eval_mask.npy")
        return d, truth
    raise ValueError(name)


def scorer():
    spec = importlib.util.spec_from_file_location("v1kit_score", KIT / "score.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.score


def run_variant(name: str, d: Path, truth: Path, tmp: Path, neurons: int = NEURONS) -> dict:
    score = scorer()
    t0 = time.time()
    recon = tmp / "recon"
    shutil.rmtree(recon, ignore_errors=True)
    entry: dict = {}
    if name == "plain":
        out = subprocess.run([sys.executable, str(KIT / "ridge_baseline.py"), "--dataset", str(d), "--out", str(recon),
                              "--neurons-subset", str(neurons)], cwd=KIT, capture_output=True, text=True, check=True)
        entry["log"] = out.stdout.strip().splitlines()[-1]
    else:
        from rtdecode.offline.fit import fit_dataset
        from rtdecode.offline.reconstruct import reconstruct

        v = VARIANTS[name]
        if v == "NEW":
            opts = {}
        elif isinstance(v, dict) and v.get("NEW"):  # the defaults with these options
            opts = {k: x for k, x in v.items() if k != "NEW"}
        else:
            opts = {**OLD, **v}
        model = tmp / "model"
        shutil.rmtree(model, ignore_errors=True)
        card = fit_dataset(d, model, "ridge", neurons, progress=False, **opts)
        reconstruct(model, d, recon, progress=False)
        tr = card.training
        entry["options"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.items()} or "defaults"
        entry["fit"] = {k: tr.get(k) for k in ("alpha", "brightness_keep", "compress", "act_scale", "rank",
                                               "validation_split", "choice_search", "brightness_choice",
                                               "brightness_keep_validation", "brightness_oof")}
        entry["fit"]["window"] = [card.window.lag_min, card.window.bins]
        entry["fit"]["val_pixel_corr"] = max(max(r["val_pixel_corr"].values()) for r in tr["alpha_search"])
    res, errors = score(str(d), str(truth), str(recon))
    if errors:
        raise RuntimeError(f"{name} on {d}: {errors[:3]}")
    entry.update(corr_masked=res["corr_masked"], corr_full=res["corr_full"],
                 per_trial=[v["corr_masked"] for v in res["trials"].values()], seconds=round(time.time() - t0, 1))
    return entry


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["kit_ca", "kit_spk", "rig"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["plain", "old"])
    ap.add_argument("--out", default="benchmarks/results/ridge_modality.json")
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--neurons", type=int, default=NEURONS, help="the first K neurons (results keyed NAME@K "
                    "when not 1,000)")
    a = ap.parse_args()
    for v in a.variants:
        if v != "plain" and v not in VARIANTS:
            ap.error(f"unknown variant {v}")
    out = Path(a.out)
    doc = json.loads(out.read_text()) if out.is_file() else {"results": {}}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                                text=True).stdout.strip())
    doc.setdefault("runs", []).append({"command": " ".join([os.path.basename(sys.executable)] + sys.argv),
                                       "commit": commit + ("-dirty" if dirty else ""),
                                       "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    doc["neurons"] = NEURONS if a.neurons == NEURONS else doc.get("neurons", NEURONS)
    doc["metric"] = "v1_kit score.py corr_masked, mean over the 10 oracle trials"
    doc["variants"] = {"plain": "ridge_baseline.py --neurons-subset 1000", "old": OLD,
                       **{k: v for k, v in VARIANTS.items() if k != "old"}}
    with tempfile.TemporaryDirectory(prefix="ridge_modality_", dir=SPK) as tmp:
        for s in a.sets:
            for seed in a.seeds:
                name = f"{s}{seed}"
                d, truth = dataset(name)
                if a.neurons != NEURONS:
                    name = f"{name}@{a.neurons}"
                for v in a.variants:
                    key = f"{name}/{v}"
                    if key in doc["results"] and not a.force:
                        continue
                    o = doc["results"].get(f"{name}/oof")
                    if v == "new" and o and o["fit"]["brightness_keep_validation"] == o["fit"]["brightness_keep"]:
                        # the default's fit is the oof fit up to the share (same window, penalty, weights:
                        # tests/decode/test_ridge_oof_brightness.py); with the same share it is the same decoder
                        e = {k: o[k] for k in ("corr_masked", "corr_full", "per_trial")}
                        e.update(same_as="oof", seconds=0.0, fit={**o["fit"], "brightness_choice": "validation",
                                                                  "brightness_oof": None,
                                                                  "brightness_keep_validation": None})
                    else:
                        e = run_variant(v, d, truth, Path(tmp), a.neurons)
                    e["commit"] = commit + ("-dirty" if dirty else "")
                    doc["results"][key] = e
                    print(f"{key:28s} {e['corr_masked']:.4f}  {e.get('fit', '')}  {e['seconds']}s", flush=True)
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps(doc, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
