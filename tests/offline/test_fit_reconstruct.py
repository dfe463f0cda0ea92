"""Offline path: simulate -> fit --method ridge -> reconstruct, and a foreign Sensorium dataset."""

import json
import shutil

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.offline.dataset import Dataset
from rtdecode.errors import DatasetError, ModelError
from rtdecode.offline.fit import fit_dataset
from rtdecode.offline.reconstruct import reconstruct


def test_simulated_dataset_has_the_sensorium_layout(small_dataset):
    ds = Dataset(small_dataset)
    assert ds.n_neurons == 300 and ds.frame_shape == (36, 64)
    assert len(ds.trials("train")) == 8 and len(ds.trials("oracle")) == 2
    v = np.load(small_dataset / "data" / "videos" / "0.npy")
    r = np.load(small_dataset / "data" / "responses" / "0.npy")
    assert v.shape == (36, 64, 150) and v.dtype == np.float32 and 0 <= v.min() and v.max() <= 255
    assert r.shape == (300, 150) and (r >= 0).all()
    assert np.load(small_dataset / "data" / "behavior" / "0.npy").shape == (2, 150)
    assert np.load(small_dataset / "meta" / "neurons" / "cell_motor_coordinates.npy").shape[0] == 300


def test_simulation_is_deterministic(small_rig):
    a, b = small_rig.trial(1), small_rig.trial(1)
    np.testing.assert_array_equal(a.movie, b.movie)
    np.testing.assert_array_equal(a.spikes, b.spikes)


def test_oracle_trials_use_held_out_images(small_rig):
    from rtdecode.stimuli.movies import ORACLE_IMAGES
    train_sources = {s for t, s in small_rig.schedule if t == "train"}
    oracle_sources = {s for t, s in small_rig.schedule if t == "oracle"}
    assert oracle_sources <= set(ORACLE_IMAGES) and not (train_sources & set(ORACLE_IMAGES))


def test_fit_and_reconstruct_ridge(tmp_path):
    # The realistic rig needs far more data than a fast test has for a clear score (300 neurons, 8
    # short trials: ~0.07); the easy rig shows at this size that the decoder learned something.
    from rtdecode.rig import VirtualRig

    small_dataset = VirtualRig(n_neurons=300, seed=3, n_train=8, n_oracle=2, trial_frames=150,
                               rig="easy").write_dataset(tmp_path / "easy_mouse")
    card = fit_dataset(small_dataset, tmp_path / "model", progress=False)
    assert json.loads((tmp_path / "model" / "card.json").read_text())["neurons"] == 300 == card.neurons
    m = reconstruct(tmp_path / "model", small_dataset, tmp_path / "rec", progress=False)
    for i in m["trial_ids"]:
        out = np.load(tmp_path / "rec" / "videos" / f"{i}.npy")
        assert out.shape == np.load(small_dataset / "data" / "videos" / f"{i}.npy").shape
    written = json.loads((tmp_path / "rec" / "metrics.json").read_text())
    assert written["pixel_corr"] == m["pixel_corr"] and written["trials"] == 2
    # A decoder that learned something: well above chance on movies never seen in training.
    assert m["pixel_corr"] > 0.2


def test_shuffled_responses_decode_nothing(small_dataset, tmp_path):
    """The same pipeline on responses unrelated to the movies must score near zero: the metric and
    the fit cannot manufacture quality."""
    fake = tmp_path / "shuffled"
    shutil.copytree(small_dataset, fake)
    rng = np.random.default_rng(1)
    ids = Dataset(fake).ids
    perm = rng.permutation(len(ids))
    resp = [np.load(fake / "data" / "responses" / f"{i}.npy") for i in ids]
    for i, j in zip(ids, perm):
        np.save(fake / "data" / "responses" / f"{i}.npy", resp[j][:, ::-1].copy())
    fit_dataset(fake, tmp_path / "model", progress=False)
    m = reconstruct(tmp_path / "model", fake, tmp_path / "rec", progress=False)
    assert abs(m["pixel_corr"]) < 0.15


def _foreign_dataset(root, rng, n=50, trials=6, T=120, pad=10):
    """A Sensorium-layout folder written by hand, not by rtdecode: other neuron count, NaN padding,
    extra tiers, no evaluation mask."""
    tiers = ["train"] * (trials - 2) + ["oracle", "final_test_main"]
    for k in range(trials):
        for kind, shape in (("videos", (36, 64, T + pad)), ("responses", (n, T + pad)),
                            ("behavior", (2, T + pad)), ("pupil_center", (2, T + pad))):
            a = rng.uniform(0, 255 if kind == "videos" else 1, shape).astype(np.float32)
            a[..., T:] = np.nan
            (root / "data" / kind).mkdir(parents=True, exist_ok=True)
            np.save(root / "data" / kind / f"{k}.npy", a)
    (root / "meta" / "trials").mkdir(parents=True)
    (root / "meta" / "neurons").mkdir(parents=True)
    np.save(root / "meta" / "trials" / "tiers.npy", np.array(tiers))
    np.save(root / "meta" / "neurons" / "unit_ids.npy", np.arange(n) + 1000)
    np.save(root / "meta" / "neurons" / "cell_motor_coordinates.npy", rng.integers(0, 500, (n, 3)))
    return root


def test_cli_on_a_foreign_dataset(tmp_path, rng):
    root = _foreign_dataset(tmp_path / "foreign", rng)
    assert main(["fit", str(root), "--out", str(tmp_path / "m"), "--method", "ridge", "--neurons-subset", "40"]) == 0
    assert main(["reconstruct", str(tmp_path / "m"), str(root), "--out", str(tmp_path / "r")]) == 0
    out = np.load(tmp_path / "r" / "videos" / "4.npy")
    assert out.shape == (36, 64, 130)
    assert np.isnan(out[..., 120:]).all() and np.isfinite(out[..., :120]).all()
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["mask"].startswith("none")


def test_bad_datasets_name_the_file_and_problem(tmp_path, rng, capsys):
    root = _foreign_dataset(tmp_path / "d", rng)
    np.save(root / "data" / "responses" / "1.npy", np.zeros((49, 130), np.float32))
    ds = Dataset(root)
    with pytest.raises(DatasetError, match=r"responses/1\.npy: expected shape \(50, 130\)"):
        ds.load("1")
    (root / "data" / "behavior" / "2.npy").unlink()
    with pytest.raises(DatasetError, match=r"missing file: .*behavior/2\.npy"):
        ds.load("2")
    np.save(root / "meta" / "trials" / "tiers.npy", np.array(["train"] * 6))
    with pytest.raises(DatasetError, match="no 'oracle' trials"):
        Dataset(root).require("oracle")
    assert main(["fit", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m")]) == 1
    assert "dataset folder not found" in capsys.readouterr().err


def test_damaged_model_directory(small_dataset, tmp_path):
    fit_dataset(small_dataset, tmp_path / "model", progress=False)
    card = json.loads((tmp_path / "model" / "card.json").read_text())
    card["neurons"] = 299
    (tmp_path / "model" / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="act_mean.*card says"):
        reconstruct(tmp_path / "model", small_dataset, tmp_path / "rec", progress=False)
    (tmp_path / "model" / "card.json").write_text("{oops")
    with pytest.raises(ModelError, match="not valid JSON"):
        reconstruct(tmp_path / "model", small_dataset, tmp_path / "rec", progress=False)


def test_cli_keep_brightness_turns_the_shrinkage_off(tmp_path, rng):
    """--keep-brightness: the share kept is 1 (the fit before); by default it is chosen from the grid."""
    from rtdecode.decode.ridge import BRIGHTNESS_KEEP

    root = _foreign_dataset(tmp_path / "foreign", rng)
    for flag, out in (([], "m"), (["--keep-brightness"], "k")):
        assert main(["fit", str(root), "--out", str(tmp_path / out), "--method", "ridge", "--neurons-subset", "40"]
                    + flag) == 0
    chosen = json.loads((tmp_path / "m" / "card.json").read_text())["training"]["brightness_keep"]
    kept = json.loads((tmp_path / "k" / "card.json").read_text())["training"]["brightness_keep"]
    assert chosen in BRIGHTNESS_KEEP and kept == 1.0
