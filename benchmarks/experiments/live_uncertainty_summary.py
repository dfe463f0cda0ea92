"""benchmarks/results/live_uncertainty.json from a live session recorded with an image-prior model: its end.json (the live stats), and the
same calibration recomputed offline from the recording (rtdecode.metrics.uncertainty_calibration, per
trial, frames after the first 30), full frame and inside the virtual rig's evaluation region.

    python benchmarks/experiments/live_uncertainty_summary.py SESSION OUT.json COMMANDS.json
(COMMANDS.json: the commands that made the session, copied into OUT.json.)"""
import json
import sys
from pathlib import Path

import numpy as np

from rtdecode import metrics
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.rig import rf_patch_mask

folder, out, commands = sys.argv[1], sys.argv[2], json.loads(Path(sys.argv[3]).read_text())
s = read_session(folder)
a = s["arrays"]
stim = {}
for shown, img in zip(map(tuple, a["shown"]), a["stimulus"]):
    if shown[0] >= 0:
        stim.setdefault(shown, img)
trials = {}
for ok, tgt, dec, unc in zip(a["decoded_valid"], map(tuple, a["target"]), a["decoded"], a["uncertainty"]):
    if ok and tgt[0] >= 0 and tgt in stim:
        trials.setdefault(tgt[0], {})[tgt[1]] = (unc, dec, stim[tgt].astype(np.float32))
triples, pairs = [], []
for t, frames in sorted(trials.items()):
    idx = sorted(frames)
    if idx[0] != 0 or len(idx) <= metrics.SKIP_FRAMES + 1:
        continue
    su, de, st = (np.stack([frames[f][i] for f in idx]) for i in range(3))
    triples.append((su, de, st))
    pairs.append((de, st))
end = s["end"]
res = {"what": "per-pixel uncertainty live: an image-prior model's 5 fold ridges' spread published as 'uncertainty' "
               "beside each decoded frame on the virtual rig (1,000 neurons, realistic profile, 256x256 frames), and "
               "its calibration: Pearson correlation of the spread with |decoded - stimulus| per pixel",
       "commands": commands,
       "live": {k: end.get(k) for k in ("frames", "published", "dropped", "skipped_frames", "latency_ms",
                                         "arrived_to_published_ms", "stages_ms", "uncertainty", "backend")},
       "inspect": summarize(s),
       "offline_from_recording": {
           "trials": len(triples),
           "pixel_corr_rf_patch": metrics.score(pairs, rf_patch_mask())["pixel_corr"] if pairs else None,
           "pixel_corr_full_frame": metrics.score(pairs, None)["pixel_corr"] if pairs else None,
           "calibration_full_frame": metrics.uncertainty_calibration(triples, None) if triples else None,
           "calibration_rf_patch": metrics.uncertainty_calibration(triples, rf_patch_mask()) if triples else None}}
Path(out).write_text(json.dumps(res, indent=1, default=str) + "\n")
print(json.dumps({"live": res["live"]["uncertainty"], "offline": {k: (v if not isinstance(v, dict) else
      {kk: vv for kk, vv in v.items() if kk != "bins"}) for k, v in res["offline_from_recording"].items()}}, indent=1))
