"""Ridge with and without its activity compression (rtdecode.decode.ridge.compress) on the realistic
rig: `rtdecode fit --method ridge --compress S` for each S, then `rtdecode reconstruct`, per seed and
neuron count (Bauer's masked pixel_corr on the oracle trials, the dataset's evaluation mask).

    python benchmarks/research/ridge_compress.py --json benchmarks/results/ridge_compress.json \
        --seeds 0 1 2 --neurons 1000 2000 --compress 0 6

Datasets as `residual_table.py` writes them (the largest neuron count per seed; smaller
counts are its first neurons). Each variant is compared with S=0 (no compression) on the same data.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from research_common import over_seeds, paired_gain, parser, population_args, progress_saver, script_main

log = logging.getLogger(__name__)


def fit_and_score(ds: Path, out: Path, rec: Path, neurons_subset: int | None, **fit_options) -> tuple[dict, dict]:
    """`rtdecode fit --method ridge` into `out`, then `rtdecode reconstruct` into `rec`: (the row a ridge
    benchmark records: pixel_corr, pixel_corr_full, trials, alpha, fit_s; the card's training info)."""
    from rtdecode.offline.fit import fit_dataset
    from rtdecode.offline.reconstruct import reconstruct

    t0 = time.perf_counter()
    card = fit_dataset(ds, out, "ridge", neurons_subset=neurons_subset, progress=True, **fit_options)
    fit_s = time.perf_counter() - t0
    m = reconstruct(out, ds, rec, progress=True)
    return ({"pixel_corr": m["pixel_corr"], "pixel_corr_full": m["pixel_corr_full"], "trials": m["trials"],
             "alpha": card.training["alpha"], "fit_s": round(fit_s, 1)}, card.training)


def run(data: Path, models: Path, seeds, neurons, compress, n_train: int, n_test: int, save) -> dict:
    from residual_table import _dataset

    rows = []
    result = {"rows": rows}
    for n in neurons:
        for seed in seeds:
            ds = _dataset(data, seed, max(neurons), n_train, n_test)
            for s in compress:
                row, training = fit_and_score(ds, models / f"s{seed}_n{n}_ridge_c{s:g}",
                                              models / f"rec_s{seed}_n{n}_ridge_c{s:g}",
                                              n if n < max(neurons) else None, compress=s)
                rows.append({"seed": seed, "neurons": n, "compress": s, **row, "act_scale": training.get("act_scale")})
                result["summary"] = summarise(rows)
                save(result)
    return result


def summarise(rows) -> dict:
    """Per neuron count and compression: mean, std and min over seeds, and the gain over S=0."""
    out = {}
    for n in sorted({r["neurons"] for r in rows}):
        base = {r["seed"]: r["pixel_corr"] for r in rows if r["neurons"] == n and r["compress"] == 0}
        per = {}
        for s in sorted({r["compress"] for r in rows if r["neurons"] == n}):
            vals = {r["seed"]: r["pixel_corr"] for r in rows if r["neurons"] == n and r["compress"] == s}
            entry = over_seeds(vals)
            gain = paired_gain(vals, base) if s != 0 else None
            if gain:
                entry["gain_over_0"] = gain
            per[f"{s:g}"] = entry
        out[str(n)] = per
    return out


def main(argv=None, progress: bool = True) -> int:
    p = parser("ridge_compress", __doc__)
    p.add_argument("--json", default="ridge_compress.json")
    population_args(p, "/work/data/rig_realistic", (1000, 2000), "default DATA/models")
    p.add_argument("--compress", type=float, nargs="+", default=[0.0, 6.0])
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    compress = sorted(set(a.compress) | {0.0})
    save = progress_saver(a.json, "ridge_compress", argv)

    r = run(Path(a.data), Path(a.models) if a.models else Path(a.data) / "models", a.seeds, sorted(a.neurons),
            compress, a.train_trials, a.test_trials, save)
    save(r, done=True)
    for n, per in r["summary"].items():
        for s, e in per.items():
            g = e.get("gain_over_0")
            print(f"{n:>5} neurons, compress {s:>3}: {e['mean']:.4f} +- {e['std']:.4f} over seeds {e['seeds']}"
                  + (f"  gain {g['mean']:+.4f} (min {g['min']:+.4f}, max {g['max']:+.4f})" if g else ""))
    return 0


if __name__ == "__main__":
    script_main(main)
