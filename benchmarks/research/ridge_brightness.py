"""Ridge with and without its brightness shrinkage (rtdecode.decode.ridge.shrink_brightness) on the
realistic rig: `rtdecode fit --method ridge` with the share of brightness kept chosen on the
validation trials (the default) against keeping all of it (the fit before), then `rtdecode
reconstruct`, per seed and neuron count (Bauer's masked pixel_corr on the oracle trials).

    python benchmarks/research/ridge_brightness.py --json benchmarks/results/ridge_brightness.json \
        --data /work/data/rig_v2 --seeds 0 1 2 --neurons 1000 2000 4000

Datasets as `residual_table.py` writes them (the largest neuron count per seed; smaller
counts are its first neurons). For each model it also records how the decoded frame brightness
(the mean over the evaluation mask, frames after the first 30) follows the true one on the oracle
trials: their correlation and the ratio of their standard deviations.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from research_common import over_seeds, paired_gain, parser, population_args, progress_saver, script_main

log = logging.getLogger(__name__)
VARIANTS = {"keep_all": (1.0,), "chosen": None}  # None: rtdecode.decode.ridge.BRIGHTNESS_KEEP


def brightness_stats(rec_dir: Path, ds_path: Path) -> dict:
    """Per oracle trial: correlation of decoded and true frame brightness, and decoded / true std."""
    from rtdecode.metrics import SKIP_FRAMES
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(ds_path)
    mask = ds.evaluation_mask()
    mask = np.ones(ds.frame_shape, bool) if mask is None else mask
    corr, ratio = [], []
    for i in ds.require("oracle"):
        truth = ds.load(i).video[SKIP_FRAMES:, mask].mean(1)
        rec = np.moveaxis(np.load(rec_dir / "videos" / f"{i}.npy"), 2, 0)[SKIP_FRAMES:len(truth) + SKIP_FRAMES, mask].mean(1)
        corr.append(float(np.corrcoef(rec, truth)[0, 1])); ratio.append(float(rec.std() / truth.std()))
    return {"brightness_corr": float(np.mean(corr)), "brightness_std_ratio": float(np.mean(ratio))}


def run(data: Path, models: Path, seeds, neurons, n_train: int, n_test: int, save) -> dict:
    from residual_table import _dataset
    from ridge_compress import fit_and_score
    from rtdecode.decode import ridge

    rows = []
    result = {"rows": rows}
    for n in neurons:
        for seed in seeds:
            ds = _dataset(data, seed, max(neurons), n_train, n_test)
            for name, keep in VARIANTS.items():
                tag = f"s{seed}_n{n}_of{max(neurons)}_ridge_{name}"
                row, training = fit_and_score(ds, models / tag, models / f"rec_{tag}", n if n < max(neurons) else None,
                                              brightness_keep=ridge.BRIGHTNESS_KEEP if keep is None else keep)
                rows.append({"seed": seed, "neurons": n, "variant": name, **row,
                             "brightness_keep": training["brightness_keep"], **brightness_stats(models / f"rec_{tag}", ds)})
                result["summary"] = summarise(rows)
                save(result)
    return result


def summarise(rows) -> dict:
    """Per neuron count and variant: mean, std, min over seeds, and the chosen variant's gain."""
    out = {}
    for n in sorted({r["neurons"] for r in rows}):
        vals = {v: {r["seed"]: r["pixel_corr"] for r in rows if r["neurons"] == n and r["variant"] == v} for v in VARIANTS}
        per = {v: over_seeds(d) for v, d in vals.items() if d}
        gain = paired_gain(vals["chosen"], vals["keep_all"])
        if gain:
            per["gain"] = gain
        out[str(n)] = per
    return out


def main(argv=None, progress: bool = True) -> int:
    p = parser("ridge_brightness", __doc__)
    p.add_argument("--json", default="ridge_brightness.json")
    population_args(p, "/work/data/rig_v2", (1000, 2000, 4000), "default DATA/models_brightness")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    save = progress_saver(a.json, "ridge_brightness", argv)

    r = run(Path(a.data), Path(a.models) if a.models else Path(a.data) / "models_brightness", a.seeds,
            sorted(a.neurons), a.train_trials, a.test_trials, save)
    save(r, done=True)
    for n, per in r["summary"].items():
        g = per.get("gain")
        print(f"{n:>5} neurons: keep all {per['keep_all']['mean']:.4f}, chosen {per['chosen']['mean']:.4f}"
              + (f", gain {g['mean']:+.4f} (per seed {g['per_seed']})" if g else ""))
    return 0


if __name__ == "__main__":
    script_main(main)
