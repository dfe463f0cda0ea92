"""fit / reconstruct with the encoder-based methods on a tiny dataset, and bad input."""

import json
import shutil

import numpy as np
import pytest

from rtdecode.offline.dataset import Dataset
from rtdecode.errors import ConfigError, DatasetError, ModelError
from rtdecode.offline.fit import fit_dataset
from rtdecode.offline.reconstruct import reconstruct


def test_fit_writes_a_self_describing_model(tiny_model):
    out, card = tiny_model
    on_disk = json.loads((out / "card.json").read_text())
    assert on_disk["method"] == "amortized" and on_disk["neurons"] == 200
    assert on_disk["frame_shape"] == [36, 64] and on_disk["window"] == {"lag_min": -4, "bins": 16}  # the ridge's 8 bins + a clip of 4 + 4 frames
    for key in ("normalisation", "rtdecode_version", "method_settings", "training"):
        assert key in on_disk
    assert on_disk["card_version"] == 2 and list(on_disk["method_settings"]) == ["amortized"]
    for key in ("encoder", "inverse", "warm_iterations", "amortized"):  # one settings block, the method's
        assert key in on_disk["method_settings"]["amortized"] and key not in on_disk
    assert on_disk["training"]["timings"]["total_s"] > 0
    with np.load(out / "weights.npz", allow_pickle=False) as z:
        assert "mask" in z.files and any(k.startswith("amortized.") for k in z.files)


@pytest.mark.parametrize("method", ["amortized", "inverse", "warm"])
def test_reconstruct_methods(tiny_model, tiny_dataset, tmp_path, method):
    m = reconstruct(tiny_model[0], tiny_dataset, tmp_path / "rec", method=method, progress=False,
                    iterations=3 if method != "amortized" else None)
    assert m["method"] == method and m["trials"] == 2
    for i in m["trial_ids"]:
        out = np.load(tmp_path / "rec" / "videos" / f"{i}.npy")
        assert out.shape == np.load(tiny_dataset / "data" / "videos" / f"{i}.npy").shape
        assert np.isfinite(out).all()
    assert json.loads((tmp_path / "rec" / "metrics.json").read_text())["pixel_corr"] == m["pixel_corr"]


def test_neurons_subset_and_wrong_method(tiny_dataset, tmp_path):
    from rtdecode.decode.inverse import InverseConfig

    card = fit_dataset(tiny_dataset, tmp_path / "m", method="inverse", neurons_subset=50, progress=False,
                       inverse_cfg=InverseConfig(iterations=2), encoder_steps=10)
    assert card.neurons == 50 and card.method == "inverse"
    with pytest.raises(ConfigError, match="can reconstruct with inverse"):
        reconstruct(tmp_path / "m", tiny_dataset, tmp_path / "r", method="amortized", progress=False)
    m = reconstruct(tmp_path / "m", tiny_dataset, tmp_path / "r", progress=False, iterations=2)
    assert m["method"] == "inverse"


def test_model_and_data_disagree(tiny_model, tiny_dataset, tmp_path):
    small = tmp_path / "small"
    shutil.copytree(tiny_dataset, small)
    ds = Dataset(small)
    for i in ds.ids:
        r = np.load(small / "data" / "responses" / f"{i}.npy")
        np.save(small / "data" / "responses" / f"{i}.npy", r[:100])
    np.save(small / "meta" / "neurons" / "unit_ids.npy", np.arange(100))
    with pytest.raises(ModelError, match="expects 200 neurons.*has 100"):
        reconstruct(tiny_model[0], small, tmp_path / "r", progress=False)
    big = tmp_path / "big"
    shutil.copytree(tiny_dataset, big)
    for i in Dataset(big).ids:
        v = np.load(big / "data" / "videos" / f"{i}.npy")
        np.save(big / "data" / "videos" / f"{i}.npy", np.zeros((40, 64, v.shape[2]), np.float32))
    with pytest.raises(ModelError, match=r"decodes \[36, 64\] frames.*\[40, 64\]"):
        reconstruct(tiny_model[0], big, tmp_path / "r", progress=False)


def test_bad_datasets(tiny_dataset, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_dataset, bad)
    r = np.load(bad / "data" / "responses" / "2.npy")
    np.save(bad / "data" / "responses" / "2.npy", r[:150])
    with pytest.raises(DatasetError, match=r"responses/2\.npy: expected shape \(200, 120\)"):
        fit_dataset(bad, tmp_path / "m", method="amortized", progress=False, encoder_steps=1)
    np.save(bad / "data" / "responses" / "2.npy", r)
    for kind in ("videos", "responses"):
        a = np.load(bad / "data" / kind / "1.npy")
        np.save(bad / "data" / kind / "1.npy", np.full_like(a, np.nan))
    with pytest.raises(DatasetError, match="trial 1 is all NaN"):
        fit_dataset(bad, tmp_path / "m", method="amortized", progress=False, encoder_steps=1)
    with pytest.raises(ConfigError, match="unknown fit method 'diffusion'"):
        fit_dataset(tiny_dataset, tmp_path / "m", method="diffusion", progress=False)
