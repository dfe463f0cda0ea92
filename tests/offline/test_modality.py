"""`rtdecode fit` tells spike counts from calcium (Dataset.modality) and takes the modality's defaults,
recorded in the card."""

import numpy as np
import pytest

from rtdecode.offline.dataset import Dataset
from rtdecode.rig import VirtualRig


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    rig = VirtualRig(60, seed=2, n_train=4, n_oracle=1, trial_frames=60)
    root = tmp_path_factory.mktemp("modality")
    return {m: rig.write_dataset(root / m, modality=m) for m in ("calcium", "spikes")}


def test_spike_counts_and_calcium_are_told_apart(datasets):
    assert Dataset(datasets["spikes"]).modality() == "spikes"
    assert Dataset(datasets["calcium"]).modality() == "calcium"


def test_negative_or_fractional_responses_are_not_spike_counts(datasets, tmp_path):
    import shutil

    d = tmp_path / "shifted"
    shutil.copytree(datasets["spikes"], d)
    first = Dataset(d).require("train")[0]
    f = d / "data" / "responses" / f"{first}.npy"
    r = np.load(f)
    np.save(f, r - 0.5)  # one trial of non-integers is enough
    assert Dataset(d).modality() == "calcium"


def test_fit_keeps_all_brightness_on_spike_counts_and_says_so(datasets, tmp_path):
    from rtdecode.offline.fit import BRIGHTNESS_BY_MODALITY, fit_dataset

    cards = {m: fit_dataset(datasets[m], tmp_path / m, "ridge", progress=False, bins=8, lag_min=0)
             for m in datasets}
    for m, card in cards.items():
        assert card.training["modality"] == m
        assert card.training["brightness_keep_grid"] == list(BRIGHTNESS_BY_MODALITY[m])
    assert cards["spikes"].training["brightness_keep"] == 1.0
    # asked for explicitly, the grid is the user's whatever the modality
    card = fit_dataset(datasets["spikes"], tmp_path / "asked", "ridge", progress=False, bins=8, lag_min=0,
                       brightness_keep=(0.0, 0.5))
    assert card.training["brightness_keep_grid"] == [0.0, 0.5]
