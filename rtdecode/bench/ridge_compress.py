"""Ridge with and without its activity compression (rtdecode.decode.ridge.compress) on the realistic
rig: `rtdecode fit --method ridge --compress S` for each S, then `rtdecode reconstruct`, per seed and
neuron count (Bauer's masked pixel_corr on the oracle trials, the dataset's evaluation mask).

    python -m rtdecode.bench.ridge_compress --json benchmarks/results/ridge_compress.json \
        --seeds 0 1 2 --neurons 1000 2000 --compress 0 6

Datasets as `rtdecode.bench.residual_table` writes them (the largest neuron count per seed; smaller
counts are its first neurons). Each variant is compared with S=0 (no compression) on the same data.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import numpy as np

from rtdecode.bench import machine_info, parser, positive_int, script_main, write_json

log = logging.getLogger(__name__)


def run(data: Path, models: Path, seeds, neurons, compress, n_train: int, n_test: int, save) -> dict:
    from rtdecode.bench.residual_table import _dataset
    from rtdecode.offline.fit import fit_dataset
    from rtdecode.offline.reconstruct import reconstruct

    rows = []
    result = {"rows": rows}
    for n in neurons:
        for seed in seeds:
            ds = _dataset(data, seed, max(neurons), n_train, n_test)
            for s in compress:
                out = models / f"s{seed}_n{n}_ridge_c{s:g}"
                t0 = time.perf_counter()
                card = fit_dataset(ds, out, "ridge", neurons_subset=n if n < max(neurons) else None,
                                   progress=True, compress=s)
                fit_s = time.perf_counter() - t0
                m = reconstruct(out, ds, models / f"rec_s{seed}_n{n}_ridge_c{s:g}", progress=True)
                rows.append({"seed": seed, "neurons": n, "compress": s, "pixel_corr": m["pixel_corr"],
                             "pixel_corr_full": m["pixel_corr_full"], "trials": m["trials"],
                             "alpha": card.training["alpha"], "act_scale": card.training.get("act_scale"),
                             "fit_s": round(fit_s, 1)})
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
            v = np.array(list(vals.values()))
            entry = {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "seeds": sorted(vals)}
            gains = np.array([vals[k] - base[k] for k in vals if k in base])
            if s != 0 and len(gains):
                entry["gain_over_0"] = {"mean": float(gains.mean()), "min": float(gains.min()), "max": float(gains.max())}
            per[f"{s:g}"] = entry
        out[str(n)] = per
    return out


def main(argv=None, progress: bool = True) -> int:
    p = parser("ridge_compress", __doc__)
    p.add_argument("--json", default="ridge_compress.json")
    p.add_argument("--data", default="/work/data/rig_realistic", help="where the datasets are (or are written)")
    p.add_argument("--models", default=None, help="where models and reconstructions go (default DATA/models)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--neurons", type=positive_int, nargs="+", default=[1000, 2000])
    p.add_argument("--compress", type=float, nargs="+", default=[0.0, 6.0])
    p.add_argument("--train-trials", type=positive_int, default=60)
    p.add_argument("--test-trials", type=positive_int, default=10)
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    compress = sorted(set(a.compress) | {0.0})
    command = "python -m rtdecode.bench.ridge_compress " + " ".join(argv if argv is not None else sys.argv[1:])
    t0 = time.perf_counter()

    def save(r, done=False):
        write_json(a.json, {**r, "command": command, "seconds": round(time.perf_counter() - t0, 1), "complete": done,
                            "machine": machine_info()})

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
