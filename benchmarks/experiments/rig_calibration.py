import sys, json, time, dataclasses, numpy as np
from rtdecode.rig import population as P
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "research"))  # benchmarks/research/rig.py
import rig as B
from rtdecode.rig import VirtualRig, rf_patch_mask
from rtdecode.stimuli import movies
variants = json.loads(sys.argv[1])
import os
BASE = P.PROFILES[os.environ.get("BASE", "realistic_v1")]  # every variant starts from it
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
for v in variants:
    P.PROFILES["realistic"] = dataclasses.replace(BASE, **{k: (tuple(x) if isinstance(x, list) else x) for k, x in v.items()})
    t0 = time.time()
    vr = VirtualRig(N, 0, 60, 10)
    tr = [vr.trial(i) for i in range(70)]
    train = [t for t in tr if t.tier == "train"]; test = [t for t in tr if t.tier == "oracle"]
    resp = np.concatenate([t.responses for t in train])
    movie = movies.make_movie(movies.ORACLE_IMAGES[0], 300, np.random.default_rng([0, 98]))
    rel = B.reliability(vr.population, movie, 6, 0)
    pairs = [(t.responses.T, t.movie) for t in train]; tp = [(t.responses.T, t.movie) for t in test]
    out = {"rel": round(float(rel.mean()), 3), "zeros": round(float((resp == 0).mean()), 3)}
    for n in sorted({1000, N}):
        out[f"ridge{n}"] = round(B.ridge_score(pairs[:-12], pairs[-12:], tp, n, rf_patch_mask())["pixel_corr"], 3)
    if os.environ.get("NF", "1") == "0":  # the quick form: no noise-free fit
        print(v, out, f"{time.time()-t0:.0f}s", flush=True); continue
    pop = vr.population
    nf = [(pop.respond(t.movie, t.behavior).T, t.movie) for t in train]
    nft = [(pop.respond(t.movie, t.behavior).T, t.movie) for t in test]
    out["nf1000"] = round(B.ridge_score(nf[:-12], nf[-12:], nft, 1000, rf_patch_mask())["pixel_corr"], 3)
    print(v, out, f"{time.time()-t0:.0f}s", flush=True)
