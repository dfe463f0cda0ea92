"""(python benchmarks/experiments/rig_reliability_probe.py VARIANTS_JSON) seconds per variant: single-trial reliability of 1,000 neurons (6 repeats of one oracle movie) and the zero fraction on 3 training movies."""
import sys, json, time, dataclasses, os
import numpy as np
from rtdecode.rig import population as P
from rtdecode.rig.population import behavior
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parents[1] / "research"))  # benchmarks/research/rig.py
import rig as B
from rtdecode.stimuli import movies
base = P.PROFILES[os.environ.get("BASE", "realistic_v1")]
variants = json.loads(sys.argv[1])
movie = movies.make_movie(movies.ORACLE_IMAGES[0], 300, np.random.default_rng([0, 98]))
for v in variants:
    P.PROFILES["realistic"] = dataclasses.replace(base, **{k: (tuple(x) if isinstance(x, list) else x) for k, x in v.items()})
    t0 = time.time()
    pop = P.Population(1000, 0)
    rel = B.reliability(pop, movie, 6, 0)
    rng = np.random.default_rng(5)
    zs, means = [], []
    for k in range(3):  # the zero fraction on three training movies
        m = movies.make_movie(movies.TRAIN_IMAGES[k], 300, rng)
        beh, _ = behavior(300, rng)
        r = pop.deconvolved(pop.spikes(pop.respond(m, beh, rng), rng), rng)
        zs.append((r == 0).mean()); means.append(r.mean())
    print("zeros %.3f mean %.3f" % (np.mean(zs), means[-1]), end=" ")
    print(json.dumps(v), f"rel mean {rel.mean():.3f} median {np.median(rel):.3f} p90 {np.percentile(rel,90):.3f}", f"{time.time()-t0:.0f}s", flush=True)
