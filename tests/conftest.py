"""Shared fixtures: small seeded virtual-rig datasets (written once per test session)."""

import numpy as np
import pytest

from rtdecode.rig import VirtualRig


@pytest.fixture(scope="session")
def small_rig():
    return VirtualRig(n_neurons=300, seed=3, n_train=8, n_oracle=2, trial_frames=150)


@pytest.fixture(scope="session")
def small_dataset(small_rig, tmp_path_factory):
    return small_rig.write_dataset(tmp_path_factory.mktemp("mouse"))


@pytest.fixture
def rng():
    return np.random.default_rng(0)
