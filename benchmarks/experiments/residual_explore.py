import sys, json, time, numpy as np, torch, logging
torch.set_num_threads(1)
from rtdecode.rig import VirtualRig, rf_patch_mask
from rtdecode.decode import ridge, residual as rs, amortized as am
from rtdecode import metrics
N, ntr, steps, nsyn = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
cfgs = json.loads(sys.argv[5]) if len(sys.argv) > 5 else [{}]
seed = 0
t0 = time.time()
vr = VirtualRig(N, seed, ntr, 10)
tr = [vr.trial(i) for i in range(len(vr.schedule))]
train = [(t.responses.T.copy(), t.movie) for t in tr if t.tier == "train"]
test = [(t.responses.T.copy(), t.movie) for t in tr if t.tier == "oracle"]
nv = max(1, round(ntr * 0.2)); fit, val = train[:-nv], train[-nv:]
mask = rf_patch_mask()
dec, info = ridge.fit(lambda: iter(fit), lambda: iter(val), keep_fit_only=True)
dfit = info.pop("fit_only_decoder")
sc = lambda f: metrics.score([(f(r), v) for r, v in test], mask)["pixel_corr"]
res = {"ridge": sc(dec.predict_trial), "ridge_fit_only": sc(dfit.predict_trial)}
print(N, ntr, res, f"{time.time()-t0:.0f}s", flush=True)
syn = []
if nsyn:
    vr2 = VirtualRig(N, seed, 100 + nsyn, 0)  # same population; trials 100.. are fresh train-pool movies and noise
    for i in range(100, 100 + nsyn):
        t = vr2.trial(i)
        syn.append((t.responses.T.copy(), t.movie))
    print("synth", len(syn), f"{time.time()-t0:.0f}s", flush=True)
for c in cfgs:
    use_syn = c.pop("synth", False)
    lr = c.pop("lr", 1e-3); wd = c.pop("wd", 1e-2); st = c.pop("steps", steps)
    net = rs.RidgeResidualNet.from_ridge(dfit, rs.ResidualConfig(**c))
    ps = am.PairSet(0, dec.basis.shape[0])
    for r, v in fit + (syn if use_syn else []):
        ps.add(r, v)
    inf = am.train_amortized(net, [("true_frames", ps, st)], batch=64, lr=lr, weight_decay=wd,
                             val=([r for r, _ in val], [v for _, v in val]), eval_every=250)
    s_fit = sc(lambda r: am.predict_trial(net, r))
    net.set_linear(dec)
    s_all = sc(lambda r: am.predict_trial(net, r))
    print(c, "synth" if use_syn else "", "lr", lr, "wd", wd, "steps", st, {"residual_fitbase": round(s_fit, 4), "residual_allbase": round(s_all, 4),
          "best_step": inf["phases"][-1]["best_step"], "hist": [round(h["val_pixel_corr"], 4) for h in inf["phases"][-1]["history"]]},
          f"{time.time()-t0:.0f}s", flush=True)
