"""Ridge at Sensorium scale (8,000 neurons) stays within this machine's memory. Slow: minutes."""

import resource

import numpy as np
import pytest

from rtdecode.decode import ridge


@pytest.mark.slow
def test_ridge_fits_8000_neurons_within_memory():
    n, T = 8000, 300

    def trials(k, seed):
        def it():
            r = np.random.default_rng(seed)
            for _ in range(k):
                yield r.poisson(0.2, (n, T)).astype(np.float32), r.uniform(0, 255, (T, 36, 64)).astype(np.float32)
        return it

    dec, info = ridge.fit(trials(4, 1), trials(1, 2), alphas=(1.0,))
    assert info["features"] == n * 2 and dec.weights.shape == (n * 2, 36 * 64)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # Linux: kB
    assert peak_gb < 20, f"peak RSS {peak_gb:.1f} GB"
