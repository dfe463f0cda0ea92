"""Alpha by 5-fold CV over all train trials vs the 80/20 split; oracle score of the fit on all train trials."""
import sys, time, os
import numpy as np
from rtdecode.offline.dataset import Dataset
from rtdecode.decode import ridge
from rtdecode import metrics

root, N, K = sys.argv[1], int(sys.argv[2]), float(os.environ.get("K", "0"))
ds = Dataset(root); train = ds.require("train"); oracle = ds.trials("oracle"); mask = ds.evaluation_mask()
def load(ids): return [(ds.load(i).responses[:N].astype(np.float32), ds.load(i).video.astype(np.float32)) for i in ids]
T, O = load(train), load(oracle)
GM = float(np.mean([r.mean() for r, _ in T]))
tr = (lambda r: np.log1p(np.maximum(r, 0) / (K * GM))) if K else (lambda r: r)
T = [(tr(r), v) for r, v in T]; O = [(tr(r), v) for r, v in O]
allr = np.concatenate([r for r, _ in T], 1); mu, sd = allr.mean(1), np.maximum(allr.std(1), 1e-3)
pm = np.mean([v.reshape(len(v), -1).mean(0) for _, v in T], 0)
basis = ridge.temporal_basis(8, int(os.environ.get("NB", "3")))
feats = lambda r: ridge.window_features(((r.T - mu) / sd).astype(np.float32), basis, 0)
X = [feats(r) for r, _ in T]; Y = [v.reshape(len(v), -1) - pm for _, v in T]
nf = 5; folds = np.array_split(np.arange(len(T)), nf)
Gs = [sum(X[i].T.astype(np.float64) @ X[i] for i in f) for f in folds]
Cs = [sum(X[i].T.astype(np.float64) @ Y[i] for i in f) for f in folds]
G, C = sum(Gs), sum(Cs); scale = np.mean(np.diag(G))
alphas = np.logspace(-1, 2, 13)
cv = np.zeros(len(alphas)); split = np.zeros(len(alphas)); orc = np.zeros(len(alphas))
for k, f in enumerate(folds):
    Gk, Ck = G - Gs[k], C - Cs[k]
    for j, a in enumerate(alphas):
        w = ridge._solve(Gk, Ck, a * np.mean(np.diag(Gk)), keep=True)
        s = metrics.score([((X[i] @ w + pm).reshape(T[i][1].shape), T[i][1]) for i in f], mask)["pixel_corr_full"]
        cv[j] += s / nf
        if k == nf - 1: split[j] = s
for j, a in enumerate(alphas):
    w = ridge._solve(G, C, a * scale, keep=True)
    orc[j] = metrics.score([((feats(r) @ w + pm).reshape(v.shape), v) for r, v in O], mask)["pixel_corr"]
print("K", K, "alphas", np.round(alphas, 3).tolist())
print("cv    ", np.round(cv, 4).tolist()); print("split ", np.round(split, 4).tolist()); print("oracle", np.round(orc, 4).tolist())
print(f"chosen: split a={alphas[split.argmax()]:.3g} -> {orc[split.argmax()]:.4f}; 5-fold a={alphas[cv.argmax()]:.3g} -> {orc[cv.argmax()]:.4f}; best a={alphas[orc.argmax()]:.3g} {orc.max():.4f}")
