"""Would shrinking more than the brightness help? On the oracle trials of the decoder table's ridge
reconstructions (all brightness kept), scale four bands of 2-D DCT spatial frequency (the brightness,
radius <= 0.06, <= 0.15, above, in cycles per pixel) by factors tuned on those held-out trials
themselves (an upper bound, not a method), against the brightness alone tuned the same way.

    python benchmarks/experiments/brightness_band_probe.py --json benchmarks/results/brightness_band_probe.json

Reads /work/data/rig_v2 (datasets) and /work/data/rig_v2/models_brightness (rec_*_ridge_keep_all).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from scipy.fft import dctn, idctn

from rtdecode import metrics
from rtdecode.bench import machine_info
from rtdecode.offline.dataset import Dataset

FACTORS = (0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", required=True)
    p.add_argument("--data", default="/work/data/rig_v2")
    a = p.parse_args()
    root = Path(a.data)
    H, W = 36, 64
    ky, kx = np.meshgrid(np.arange(H) / H, np.arange(W) / W, indexing="ij")
    rad = np.sqrt(ky**2 + kx**2)
    bands = [rad == 0, (rad > 0) & (rad <= 0.06), (rad > 0.06) & (rad <= 0.15), rad > 0.15]

    def apply(r, f):
        c = dctn(r - 127.5, axes=(1, 2), norm="ortho")
        return idctn(c * sum(fi * b for fi, b in zip(f, bands)), axes=(1, 2), norm="ortho") + 127.5

    rows = []
    for n in (1000, 4000):
        for s in (0, 1, 2):
            ds = Dataset(root / f"realistic_n4000_t60_o10_s{s}")
            mask = ds.evaluation_mask()
            rec = root / "models_brightness" / f"rec_s{s}_n{n}_of4000_ridge_keep_all" / "videos"
            pairs = []
            for i in ds.require("oracle"):
                t = ds.load(i).video
                pairs.append((np.moveaxis(np.load(rec / f"{i}.npy"), 2, 0)[: len(t)], t))

            def sc(f):
                return metrics.score([(apply(r, f), t) for r, t in pairs], mask)["pixel_corr"]

            base = sc((1, 1, 1, 1))
            dc = max((sc((v, 1, 1, 1)), v) for v in FACTORS[:5])
            best, f = (base, (1, 1, 1, 1)), [1.0] * 4
            for _ in range(2):  # coordinate ascent over the bands
                for b in range(4):
                    for v in FACTORS:
                        g = list(f); g[b] = v
                        x = sc(g)
                        if x > best[0]:
                            best = (x, tuple(g))
                    f = list(best[1])
            rows.append({"seed": s, "neurons": n, "all_kept": base, "brightness_only_best": dc[0],
                         "brightness_factor": dc[1], "bands_best": best[0], "band_factors": best[1],
                         "bands_over_brightness": best[0] - dc[0]})
            print(rows[-1], flush=True)
    out = {"rows": rows, "max_bands_over_brightness": max(r["bands_over_brightness"] for r in rows),
           "command": "python benchmarks/experiments/brightness_band_probe.py --json " + a.json, "machine": machine_info()}
    Path(a.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
