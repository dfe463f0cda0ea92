"""Per-pixel ridge penalty chosen by validation MSE vs one penalty for all pixels (80/20 split, oracle score of the fit-only decoder)."""
import sys, os
import numpy as np
from rtdecode.offline.dataset import Dataset
from rtdecode.decode import ridge
from rtdecode import metrics
root, N = sys.argv[1], int(sys.argv[2]); K = 6.0
ds = Dataset(root); train = ds.require("train"); oracle = ds.trials("oracle"); mask = ds.evaluation_mask()
def load(ids): return [(ds.load(i).responses[:N].astype(np.float32), ds.load(i).video.astype(np.float32)) for i in ids]
T, O = load(train), load(oracle)
GM = float(np.mean([r.mean() for r, _ in T])); tr = lambda r: ridge.compress(r, K * GM)
T = [(tr(r), v) for r, v in T]; O = [(tr(r), v) for r, v in O]
nv = 12; F, V = T[:-nv], T[-nv:]
allr = np.concatenate([r for r, _ in T], 1); mu, sd = allr.mean(1), np.maximum(allr.std(1), 1e-3)
pm = np.mean([v.reshape(len(v), -1).mean(0) for _, v in T], 0)
basis = ridge.temporal_basis(8, 3)
feats = lambda r: ridge.window_features(((r.T - mu) / sd).astype(np.float32), basis, 0)
X = [feats(r) for r, _ in F]
G = sum(x.T.astype(np.float64) @ x for x in X); C = sum(x.T.astype(np.float64) @ (v.reshape(len(v), -1) - pm) for x, (_, v) in zip(X, F))
lam, U = np.linalg.eigh(G); UC = U.T @ C; scale = np.mean(np.diag(G))
Xv = [feats(r) @ U for r, _ in V]; Yv = [v.reshape(len(v), -1) for _, v in V]; Xo = [feats(r) @ U for r, _ in O]
alphas = np.logspace(-1, 2, 13)
mse = np.zeros((len(alphas), G.shape[0] * 0 + C.shape[1])); glob = []
for j, a in enumerate(alphas):
    B = UC / (lam + a * scale)[:, None]
    preds = [x[30:] @ B + pm for x in Xv]
    mse[j] = sum(((p - y[30:]) ** 2).sum(0) for p, y in zip(preds, Yv))
    glob.append(metrics.score([((x @ B + pm).reshape(v.shape), v) for x, (_, v) in zip(Xv, V)], None)["pixel_corr_full"])
jg = int(np.argmax(glob)); jp = mse.argmin(0)
def oracle_score(Bfull):
    return metrics.score([((x @ Bfull + pm).reshape(v.shape), v) for x, (_, v) in zip(Xo, O)], mask)["pixel_corr"]
Bg = UC / (lam + alphas[jg] * scale)[:, None]
Bp = np.stack([UC[:, p] / (lam + alphas[jp[p]] * scale) for p in range(C.shape[1])], 1)
print("global alpha", alphas[jg], "oracle", round(oracle_score(Bg), 4), "| per-pixel (median alpha %.3g, in mask %.3g)" % (np.median(alphas[jp]), np.median(alphas[jp][mask.ravel()])), "oracle", round(oracle_score(Bp), 4))
