"""(TR=none|log|logg|popnorm|gpop... K=S: the activity transform; run: TR=logg K=6 python benchmarks/experiments/ridge_sweep.py DATASET NEURONS default,mean,raw8,b4)
Sweep ridge variants with one eigendecomposition each: alpha by full vs masked validation score."""
import sys, time, json
import numpy as np
from rtdecode.offline.dataset import Dataset
from rtdecode.decode import ridge
from rtdecode import metrics

root, N = sys.argv[1], int(sys.argv[2])
ds = Dataset(root)
train = ds.require("train"); oracle = ds.require("oracle") if "oracle" in str(ds.trials(("oracle",))) or True else None
oracle = ds.trials("oracle")
nv = max(1, round(len(train) * 0.2)); fit_ids, val_ids = train[:-nv], train[-nv:]
mask = ds.evaluation_mask()
load = lambda ids: [(ds.load(i).responses[:N].astype(np.float32), ds.load(i).video.astype(np.float32)) for i in ids]
F, V, O = load(fit_ids), load(val_ids), load(oracle)
import os
TR = os.environ.get("TR", "none")
GM = float(np.mean([r.mean() for r, _ in F]))
EPS = float(os.environ.get("EPS", "0.1"))
def _p0():
    global TR
    t0 = TR; TR = TR.replace("gpop", "")
    p = float(np.mean([tr(r).mean() for r, _ in F])); TR = t0; return p
def tr(r):
    if "sqrt" in TR: r = np.sqrt(np.maximum(r, 0))
    if "logg" in TR: r = np.log1p(np.maximum(r, 0) / (GM * float(os.environ.get("K", "1"))))
    elif "logm" in TR: r = np.log1p(np.maximum(r, 0) / np.maximum(r.mean(1, keepdims=True), 1e-6))
    elif "logs" in TR: r = np.log1p(np.maximum(r, 0) / np.maximum(r.std(1, keepdims=True), 1e-6))
    elif "log" in TR: r = np.log1p(np.maximum(r, 0))
    if "gpop" in TR:
        p = r.mean(0, keepdims=True); r = r / (p / P0 + EPS)
    if "popnorm" in TR:
        p = r.mean(0, keepdims=True); r = r / (p / p.mean() + 0.1)
    if "popsub" in TR:
        p = r.mean(0, keepdims=True); r = r - p
    return r
P0 = _p0()
F = [(tr(r), v) for r, v in F]; V = [(tr(r), v) for r, v in V]; O = [(tr(r), v) for r, v in O]
allr = np.concatenate([r for r, _ in F + V], 1)
mu, sd = allr.mean(1), np.maximum(allr.std(1), 1e-3)
pm = np.mean([v.reshape(len(v), -1).mean(0) for _, v in F + V], 0)

def feats(r, basis, lag_min=0):
    return ridge.window_features(((r.T - mu) / sd).astype(np.float32), basis, lag_min)

def run(name, basis, lag_min=0, alphas=np.logspace(-2.5, 2.5, 21)):
    t0 = time.time()
    X = [feats(r, basis, lag_min) for r, _ in F]
    G = sum(x.T.astype(np.float64) @ x for x in X)
    C = sum(x.T.astype(np.float64) @ (v.reshape(len(v), -1) - pm) for x, (_, v) in zip(X, F))
    lam, U = np.linalg.eigh(G); UC = U.T @ C; scale = lam.mean()
    Xv = [feats(r, basis, lag_min) @ U for r, _ in V]; Xo = [feats(r, basis, lag_min) @ U for r, _ in O]
    res = []
    for a in alphas:
        B = UC / (lam + a * scale)[:, None]
        sv = metrics.score([((x @ B + pm).reshape(v.shape), v) for x, (_, v) in zip(Xv, V)], mask)
        so = metrics.score([((x @ B + pm).reshape(v.shape), v) for x, (_, v) in zip(Xo, O)], mask)
        res.append((a, sv["pixel_corr_full"], sv["pixel_corr"], so["pixel_corr"]))
    print("  alphas", [round(float(r[0]), 3) for r in res]); print("  oracle", [round(r[3], 4) for r in res]); print("  val_full", [round(r[1], 4) for r in res])
    bf = max(res, key=lambda r: r[1]); bm = max(res, key=lambda r: r[2]); bo = max(res, key=lambda r: r[3])
    print(f"{name:30s} full-choice a={bf[0]:.3g} oracle {bf[3]:.4f} | masked-choice a={bm[0]:.3g} oracle {bm[3]:.4f} | best oracle a={bo[0]:.3g} {bo[3]:.4f}  {time.time()-t0:.0f}s", flush=True)
    return res

variants = sys.argv[3].split(",")
for v in variants:
    if v == "default": run("basis3 bins8", ridge.temporal_basis(8, 3))
    elif v == "b4": run("basis4 bins8", ridge.temporal_basis(8, 4))
    elif v == "raw8": run("raw lags 0..7", np.eye(8, dtype=np.float32))
    elif v == "raw6l1": run("raw lags 1..6", np.eye(6, dtype=np.float32), 1)
    elif v == "mean": run("mean lags 0..7", np.ones((8, 1), np.float32))
    elif v == "b3w10": run("basis3 bins10", ridge.temporal_basis(10, 3))
    elif v == "b3w12l-2": run("basis3 bins12 lag-2", ridge.temporal_basis(12, 3), -2)
