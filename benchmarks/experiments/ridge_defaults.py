import sys, json, time, dataclasses, numpy as np
from rtdecode.rig import population as P
from rtdecode.rig import VirtualRig, rf_patch_mask
from rtdecode.decode import ridge
from rtdecode import metrics
N = int(sys.argv[1]); prof = json.loads(sys.argv[2])
P.PROFILES["realistic"] = dataclasses.replace(P.PROFILES["realistic"], **{k: (tuple(x) if isinstance(x, list) else x) for k, x in prof.items()})
t0 = time.time()
vr = VirtualRig(N, 0, 60, 10)
tr = [vr.trial(i) for i in range(70)]
train = [(t.responses.T.copy(), t.movie) for t in tr if t.tier == "train"]
test = [(t.responses.T.copy(), t.movie) for t in tr if t.tier == "oracle"]
fit, val = train[:-12], train[-12:]
mask = rf_patch_mask()
def run(name, **kw):
    t = time.time()
    dec, info = ridge.fit(lambda: iter(fit), lambda: iter(val), **kw)
    s = metrics.score([(dec.predict_trial(r), v) for r, v in test], mask)["pixel_corr"]
    print(f"{name:30s} {s:.4f} alpha {info['alpha']} {time.time()-t:.0f}s", flush=True)
run("default")
run("rank None", rank=None)
run("fine alphas", alphas=tuple(10 ** np.arange(-1, 3.01, 0.5)))
run("bins 12", bins=12)
run("bins 6", bins=6)
run("n_basis 4", n_basis=4)
run("n_basis 2", n_basis=2)
