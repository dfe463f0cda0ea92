"""Shared fixtures: small seeded virtual-rig datasets (written once per test session)."""

import os

# One BLAS / OpenMP thread in the test process and the processes it starts, set before NumPy or
# torch load: on a shared 2-core machine their spinning worker threads made fits 20-40x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rtdecode.rig import VirtualRig  # noqa: E402


@pytest.fixture(scope="session")
def small_rig():
    return VirtualRig(n_neurons=300, seed=3, n_train=8, n_oracle=2, trial_frames=150)


@pytest.fixture(scope="session")
def small_dataset(small_rig, tmp_path_factory):
    return small_rig.write_dataset(tmp_path_factory.mktemp("mouse"))


@pytest.fixture(scope="session")
def tiny_rig():
    # for tests/decode and tests/research. The easy rig: at this size (6 short trials) the realistic rig
    # leaves a 120-step encoder nothing to learn
    return VirtualRig(n_neurons=200, seed=5, n_train=6, n_oracle=2, trial_frames=120, rig="easy")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_rig, tmp_path_factory):
    return tiny_rig.write_dataset(tmp_path_factory.mktemp("tiny_mouse"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
