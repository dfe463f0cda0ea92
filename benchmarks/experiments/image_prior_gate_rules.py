"""Which step would each selection rule keep, and what would it have gained on the oracle trials?

Reads image_prior_explore.py's json (its rows' `history`: every validation's per-trial gains over
the linear decoder, and the oracle gain of the same step, recorded only to compare rules here) and
replays each rule of rtdecode.decode.image_prior over every row. The oracle trials choose nothing
in the product; a rule chosen from this table must be confirmed on other seeds.

usage: python benchmarks/experiments/image_prior_gate_rules.py PROBE.json [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from rtdecode.decode.image_prior import gate_passes

RULES = {  # name: (gate, min_gain_z)
    "z2": ("z", 2.0),
    "z3": ("z", 3.0),
    "z2_halves": ("halves", 2.0),
    "z2_twice": ("twice", 2.0),
    "z2_halves_twice": ("halves_twice", 2.0),
}


def replay(history, gate, z):
    """The step `rtdecode.decode.image_prior.train` would keep under (gate, z): (step, oracle gain)."""
    best_s, best_step, best_oracle = history[0]["val_pixel_corr"], 0, 0.0
    prev = None
    for h in history[1:]:
        ok = gate_passes(h["val_trial_gains"], prev, gate, z)
        prev = h["val_trial_gains"]
        if h["val_pixel_corr"] > best_s and ok:
            best_s, best_step, best_oracle = h["val_pixel_corr"], h["step"], h["oracle_gain"]
    return best_step, best_oracle


def table_of(rows) -> None:
    """Markdown: per row, the kept network against linear on the oracle trials, and per validated step
    its validation gain and its oracle gain (the latter only where the probe recorded it)."""
    print("| data | variant | linear | amortized | gain (+- se) | trials up | kept step | validation gain by step | oracle gain by step |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        h = r["history"][1:]
        vg = " / ".join(f"{x['gain_over_linear']:+.3f}" for x in h)
        og = " / ".join(f"{x['oracle_gain']:+.3f}" for x in h) if all("oracle_gain" in x for x in h) else "-"
        print(f"| {r['name']} | `{r['variant']}` | {r['linear']:.3f} | {r['amortized']:.3f} | {r['gain']:+.3f} +- "
              f"{r['gain_se']:.3f} | {r['trials_up']}/10 | {r['best_step']} | {vg} | {og} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probe")
    ap.add_argument("--json", default=None)
    ap.add_argument("--table", action="store_true", help="print every row as a markdown table first")
    a = ap.parse_args()
    if a.table:
        table_of(json.loads(Path(a.probe).read_text())["rows"])
    rows = [r for r in json.loads(Path(a.probe).read_text())["rows"]
            if all("oracle_gain" in h for h in r["history"]) and all("val_trial_gains" in h for h in r["history"][1:])]
    table = {}
    for name, (gate, z) in RULES.items():
        picks = [(r["name"], r["variant"], *replay(r["history"], gate, z)) for r in rows]
        g = np.array([p[3] for p in picks])
        table[name] = {"rows": len(picks), "kept_networks": int(sum(p[2] > 0 for p in picks)),
                       "mean_oracle_gain": float(g.mean()), "losses": int((g < 0).sum()),
                       "worst": float(g.min()), "picks": picks}
        print(f"{name:18s} rows {len(picks)}, networks kept {table[name]['kept_networks']}, mean oracle gain "
              f"{g.mean():+.4f}, losses {(g < 0).sum()} (worst {g.min():+.4f})")
    if a.json:
        Path(a.json).write_text(json.dumps(table, indent=1) + "\n")


if __name__ == "__main__":
    main()
