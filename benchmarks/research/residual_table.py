"""The decoder table on the realistic rig: `rtdecode fit --method ridge` against `--method amortized`
(and optionally `reconstruct --method warm`), defaults, at several neuron counts and seeds.

    python benchmarks/research/residual_table.py --json benchmarks/results/decoder_table.json \
        --png benchmarks/results/decoder_table.png --seeds 0 1 2 --neurons 1000 2000 4000

Per seed: a realistic-rig dataset of the largest neuron count (`rtdecode simulate` defaults except
--neurons, --train-trials, --test-trials) is written under --data; each smaller count is its first
neurons (`--neurons-subset`, as Bauer et al. subsample one recording). Each model is fitted and
scored on the oracle trials exactly as `rtdecode fit` / `rtdecode reconstruct` do (Bauer's masked
pixel_corr with the dataset's evaluation mask). The PNG shows held-out frames of the first seed:
stimulus, then ridge and amortized (and warm) at each neuron count.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from research_common import population_args, progress_saver

log = logging.getLogger(__name__)


def _dataset(data: Path, seed: int, neurons: int, n_train: int, n_test: int) -> Path:
    from rtdecode.rig import VirtualRig

    root = data / f"realistic_n{neurons}_t{n_train}_o{n_test}_s{seed}"
    rig = VirtualRig(neurons, seed, n_train, n_test)
    written = root / "meta" / "rig" / "profile.json"
    if not written.is_file() or json.loads(written.read_text()) != json.loads(json.dumps(rig.profile_params())):
        if root.exists():  # written by an earlier profile: its numbers would be mislabelled
            raise SystemExit(f"{root} holds a dataset of another rig profile (or one written before profile.json "
                             "existed): remove it or choose another --data")
        rig.write_dataset(root, progress=True)
    return root


def run(data: Path, models: Path, seeds, neurons, n_train: int, n_test: int, warm: bool, options: dict,
        checkpoint=None) -> dict:
    """Rows in the order (neurons, seed), smallest count first; `checkpoint(result)` after each row."""
    from rtdecode.offline.fit import fit_dataset
    from rtdecode.offline.reconstruct import reconstruct

    rows = []
    for n in neurons:
        for seed in seeds:
            ds = _dataset(data, seed, max(neurons), n_train, n_test)
            row = {"seed": seed, "neurons": n}
            for method in ("ridge", "amortized"):
                # the dataset's size in the name: a model is reused only on the data it was fitted on
                # (a 1,000-neuron dataset's model is not one for the first 1,000 of a 4,000-neuron one)
                tag = f"s{seed}_n{n}_of{max(neurons)}"
                out = models / f"{tag}_{method}"
                t0 = time.perf_counter()
                if (out / "card.json").is_file():  # fitted by an earlier, interrupted run: reused
                    card = json.loads((out / "card.json").read_text())
                    row[f"{method}_fit_s"] = card["training"].get("fit_seconds")
                else:
                    card = fit_dataset(ds, out, method, neurons_subset=n if n < max(neurons) else None,
                                       progress=True, **(options if method == "amortized" else {})).to_dict()
                    row[f"{method}_fit_s"] = time.perf_counter() - t0
                m = reconstruct(out, ds, models / f"rec_{tag}_{method}", progress=True)
                row[method] = m["pixel_corr"]
                row[f"{method}_trials"] = m["trials"]
                if method == "amortized":
                    tp = card["training"]
                    row["amortized_best_step"] = tp["amortized"]["phases"][-1]["best_step"]
                    row["encoder_val_corr"] = (float(np.mean([e["val_corr"] for e in tp["encoder"]]))
                                               if tp["encoder"] else None)
                    if warm:
                        w = reconstruct(out, ds, models / f"rec_{tag}_warm", method="warm", progress=True)
                        row["warm"] = w["pixel_corr"]
            row["gain"] = row["amortized"] - row["ridge"]
            log.info("seed %d, %d neurons: ridge %.4f amortized %.4f", seed, n, row["ridge"], row["amortized"])
            rows.append(row)
            if checkpoint:
                checkpoint({"rows": rows, "summary": summarise(rows, neurons, warm)})
    return {"rows": rows, "summary": summarise(rows, neurons, warm)}


def summarise(rows, neurons, warm) -> dict:
    summary = {}
    for n in neurons:
        rs = [r for r in rows if r["neurons"] == n]
        if not rs:
            continue
        summary[str(n)] = {k: {"mean": float(np.mean([r[k] for r in rs])), "std": float(np.std([r[k] for r in rs])),
                               "min": float(np.min([r[k] for r in rs]))}
                           for k in ("ridge", "amortized", "gain") + (("warm",) if warm else ())}
        summary[str(n)]["seeds"] = len(rs)
    return summary


def figure(models: Path, data: Path, seed: int, neurons, n_train: int, n_test: int, path: Path, warm: bool,
           trials: int = 3, frames: int = 5, zoom: int = 3, methods: list[str] | None = None,
           dataset_neurons: int | None = None) -> None:
    """PNG: for `trials` oracle trials, `frames` frames each; rows: stimulus, then per neuron count
    ridge, amortized (and warm). Pixels outside the evaluation mask are dimmed."""
    from PIL import Image, ImageDraw

    from rtdecode import metrics
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(_dataset(data, seed, dataset_neurons or max(neurons), n_train, n_test))
    mask = ds.evaluation_mask()
    ids = ds.trials("oracle")[:trials]
    methods = methods or ["ridge", "amortized"] + (["warm"] if warm else [])
    top = dataset_neurons or max(neurons)
    rows = [("stimulus", None)] + [(f"{m} {n}", models / f"rec_s{seed}_n{n}_of{top}_{m}") for n in neurons for m in methods]
    h, w = ds.frame_shape
    gap, label = 2, 110
    W = label + len(ids) * frames * (w + gap)
    canvas = np.full((len(rows) * (h + gap), W), 255, np.uint8)
    for ti, i in enumerate(ids):
        stim = ds.load(i).video
        idx = np.linspace(metrics.SKIP_FRAMES, stim.shape[0] - 1, frames).astype(int)
        for ri, (name, folder) in enumerate(rows):
            vid = stim if folder is None else np.moveaxis(np.load(folder / "videos" / f"{i}.npy"), 2, 0)
            for c, k in enumerate(idx):
                img = np.clip(vid[k], 0, 255)
                if mask is not None:
                    img = np.where(mask, img, 0.4 * img + 0.6 * 255)
                x0 = label + (ti * frames + c) * (w + gap)
                canvas[ri * (h + gap): ri * (h + gap) + h, x0:x0 + w] = img
    im = Image.fromarray(canvas).convert("RGB")
    d = ImageDraw.Draw(im)
    for ri, (name, _) in enumerate(rows):
        d.text((2, ri * (h + gap) + h // 2 - 5), name, fill=(0, 0, 0))
    im.resize((im.width * zoom, im.height * zoom), Image.NEAREST).save(path)


def main(argv=None, progress=False) -> int:
    p = argparse.ArgumentParser(prog="python benchmarks/research/residual_table.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", default="decoder_table.json")
    p.add_argument("--png", default=None)
    population_args(p, "/work/data/rig_realistic", (1000, 2000, 4000), "default: beside --json")
    p.add_argument("--warm", action="store_true", help="also reconstruct with --method warm")
    p.add_argument("--encoder-steps", type=int, default=None)
    p.add_argument("--synth-movies", type=int, default=None)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    opts = {k: v for k, v in (("encoder_steps", a.encoder_steps), ("synth_movies", a.synth_movies)) if v is not None}
    models = Path(a.models) if a.models else Path(a.data) / "models"
    save = progress_saver(a.json, "residual_table", argv)

    r = run(Path(a.data), models, a.seeds, sorted(a.neurons), a.train_trials, a.test_trials, a.warm, opts, save)
    save(r, done=True)
    if a.png:
        figure(models, Path(a.data), a.seeds[0], sorted(a.neurons), a.train_trials, a.test_trials, Path(a.png), a.warm)
    for n, s in r["summary"].items():
        print(f"{n:>5} neurons ({s['seeds']} seeds): ridge {s['ridge']['mean']:.3f} +- {s['ridge']['std']:.3f}  "
              f"amortized {s['amortized']['mean']:.3f} +- {s['amortized']['std']:.3f}  "
              f"gain {s['gain']['mean']:+.3f} (min {s['gain']['min']:+.3f})"
              + (f"  warm {s['warm']['mean']:.3f}" if "warm" in s else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
