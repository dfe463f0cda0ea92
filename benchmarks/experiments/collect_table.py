"""Collect the decoder table from the model and reconstruction folders that
`python benchmarks/research/residual_table.py` (then `python -m rtdecode.bench.residual_table`) wrote (for runs stopped before their own JSON).

    python benchmarks/experiments/collect_table.py /work/data/rig_realistic/models --json benchmarks/results/decoder_table.json
"""
import argparse, json, re, sys
from pathlib import Path
import numpy as np

p = argparse.ArgumentParser()
p.add_argument("models")
p.add_argument("--json", required=True)
a = p.parse_args()
root = Path(a.models)
rows = {}
for rec in sorted(root.glob("rec_s*_n*_*")):
    m = re.match(r"rec_s(\d+)_n(\d+)_(\w+)", rec.name)
    if not m or not (rec / "metrics.json").is_file():
        continue
    seed, n, method = int(m[1]), int(m[2]), m[3]
    met = json.loads((rec / "metrics.json").read_text())
    row = rows.setdefault((n, seed), {"seed": seed, "neurons": n})
    row[method] = met["pixel_corr"]
    row[f"{method}_trials"] = met["trials"]
    card_path = root / f"s{seed}_n{n}_{method}" / "card.json"
    if card_path.is_file():
        tr = json.loads(card_path.read_text())["training"]
        row[f"{method}_fit_s"] = tr.get("fit_seconds")
        if method == "amortized":
            ph = tr["amortized"]["phases"][-1]
            row["amortized_best_step"] = ph["best_step"]
            row["amortized_val_history"] = [(h["step"], round(h["val_pixel_corr"], 4)) for h in ph["history"]]
            row["ridge_alpha"] = tr["amortized"]["ridge"]["alpha"]
out = []
for k in sorted(rows):
    r = rows[k]
    if "ridge" in r and "amortized" in r:
        r["gain"] = r["amortized"] - r["ridge"]
        out.append(r)
summary = {}
for n in sorted({r["neurons"] for r in out}):
    rs = [r for r in out if r["neurons"] == n]
    summary[str(n)] = {k: {"mean": float(np.mean([r[k] for r in rs])), "std": float(np.std([r[k] for r in rs])),
                           "min": float(np.min([r[k] for r in rs]))} for k in ("ridge", "amortized", "gain")}
    summary[str(n)]["seeds"] = [r["seed"] for r in rs]
res = {"command": "python benchmarks/experiments/collect_table.py " + " ".join(sys.argv[1:]),
       "made_by": "python -m rtdecode.bench.residual_table --seeds 0 1 2 --neurons 1000 2000 (datasets: rtdecode simulate "
                  "defaults, 2,000 neurons, 60 train + 10 oracle trials; 1,000 = --neurons-subset 1000; fit/reconstruct defaults)",
       "rows": out, "summary": summary}
Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
for n, s in summary.items():
    print(n, "seeds", s["seeds"], "ridge %.4f +- %.4f" % (s["ridge"]["mean"], s["ridge"]["std"]),
          "amortized %.4f +- %.4f" % (s["amortized"]["mean"], s["amortized"]["std"]), "gain %+.4f (min %+.4f)" % (s["gain"]["mean"], s["gain"]["min"]))
