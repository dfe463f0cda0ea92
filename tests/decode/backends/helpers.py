"""Helpers of the backend tests: a ridge decoder with random weights, activity-like windows."""

import numpy as np

from rtdecode.decode import model as model_files
from rtdecode.decode import ridge

N, BINS, H, W = 60, 8, 36, 64


def make_ridge(folder, n=N, bins=BINS, nb=3, seed=0):
    rng = np.random.default_rng(seed)
    dec = ridge.RidgeDecoder(rng.uniform(0, 1, n).astype(np.float32), rng.uniform(0.5, 2, n).astype(np.float32),
                             ridge.temporal_basis(bins, nb),
                             (rng.standard_normal((n * nb, H * W)) / np.sqrt(n * nb)).astype(np.float32),
                             rng.uniform(0, 255, H * W).astype(np.float32), (H, W), 0)
    model_files.save(folder, model_files.new_card("ridge", n, 0, bins, (H, W), 30.0), dec.arrays())
    return dec


def windows(k, n=N, bins=BINS, seed=123):
    """Fresh activity-like windows (non-negative, sparse-ish)."""
    return np.random.default_rng(seed).gamma(0.5, 2.0, (k, n, bins)).astype(np.float32)
