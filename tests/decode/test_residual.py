"""The default amortized decoder: ridge + a residual network that starts at zero."""

import json

import numpy as np
import pytest
import torch

from rtdecode.decode import amortized as am
from rtdecode.decode import ridge
from rtdecode.decode.residual import ResidualConfig, RidgeResidualNet


def _ridge(tiny_trials):
    fit, val = tiny_trials[:4], tiny_trials[4:6]
    return ridge.fit(lambda: ((t[0], t[1]) for t in fit), lambda: ((t[0], t[1]) for t in val))[0]


def _residual_setup(tiny_trials):
    """Ridge on 4 trials, the residual network on it, its training pairs and 2 validation trials."""
    dec = _ridge(tiny_trials)
    net = RidgeResidualNet.from_ridge(dec)
    pairs = am.PairSet(0, dec.basis.shape[0])
    for t in tiny_trials[:4]:
        pairs.add(t[0], t[1])
    return dec, net, pairs, ([t[0] for t in tiny_trials[4:6]], [t[1] for t in tiny_trials[4:6]])


def test_starts_as_the_ridge_decoder(tiny_trials):
    dec = _ridge(tiny_trials)
    net = RidgeResidualNet.from_ridge(dec).eval()
    resp = tiny_trials[6][0]
    np.testing.assert_allclose(am.predict_trial(net, resp), dec.predict_trial(resp), rtol=1e-4, atol=1e-2)
    out = np.empty(dec.frame_shape, np.float32)
    dec.predict_window(resp[:, 10:18], out)
    with torch.no_grad():
        np.testing.assert_allclose(net(torch.from_numpy(resp[None, :, 10:18]))[0].numpy(), out, rtol=1e-4, atol=1e-2)


def test_default_fit_keeps_ridge_in_the_race_and_exports(tiny_dataset, tmp_path):
    from rtdecode import decode
    from rtdecode.decode import export
    from rtdecode.offline.fit import fit_dataset
    from rtdecode.offline.reconstruct import reconstruct

    # --encoder-steps 0: the residual decoder alone (the default also trains the encoder, 1000 steps)
    card = fit_dataset(tiny_dataset, tmp_path / "m", method="amortized", progress=False, amortized_steps=(0, 20),
                       amortized_cfg=ResidualConfig(),
                       encoder_steps=0)
    tp = card.training
    assert card.amortized["kind"] == "ridge_residual" and tp["encoder"] == []
    hist = tp["amortized"]["phases"][-1]["history"]
    assert hist[0]["step"] == 0  # ridge alone competes for the kept step
    kept = tp["amortized"]["phases"][-1]["best_step"]
    # the best validation score among step 0 and the steps whose paired gain is confident (min_gain_z 2)
    eligible = [h for h in hist if h["step"] == 0 or h["gain_over_step0"] > 2.0 * h["gain_se"]]
    assert max(h["val_pixel_corr"] for h in eligible) == next(h for h in hist if h["step"] == kept)["val_pixel_corr"]
    _, dec = decode.load(tmp_path / "m")
    assert dec.modes == ("amortized",)
    m = reconstruct(tmp_path / "m", tiny_dataset, tmp_path / "r", progress=False)
    assert np.isfinite(m["pixel_corr"])
    pytest.importorskip("onnxruntime")
    entry = export.export_onnx(tmp_path / "m")
    assert entry["parity_max_rel_err"] < 1e-4
    assert json.loads((tmp_path / "m" / "card.json").read_text())["onnx"]["sha256"] == entry["sha256"]


@pytest.mark.parametrize("patience, ran", [(2, 20), (None, 60)])
def test_training_stops_after_patience_validations_without_a_better_score(tiny_trials, patience, ran):
    dec, net, pairs, val = _residual_setup(tiny_trials)
    # lr 0: the network never changes, so no validation beats step 0
    info = am.train_amortized(net, [("true_frames", pairs, 60)], lr=0.0, val=val, eval_every=10, patience=patience)
    phase = info["phases"][-1]
    assert phase["best_step"] == 0
    assert phase["history"][-1]["step"] == ran
    assert phase.get("stopped_at") == (ran if patience else None)


def test_a_residual_step_must_gain_on_the_validation_trials_together():
    from rtdecode.decode.amortized import confident_gain

    base = np.array([0.20, 0.25, 0.18, 0.22, 0.30, 0.21])
    mean, se, ok = confident_gain(base + 0.01, base, 2.0)  # every trial a little better
    assert ok and np.isclose(mean, 0.01)
    # the same mean gain carried by two trials, the others worse: not evidence
    mixed = base + np.array([0.05, 0.05, -0.01, -0.01, -0.01, -0.01])
    mean, se, ok = confident_gain(mixed, base, 2.0)
    assert np.isclose(mean, 0.01) and not ok and se > 0.005
    assert not confident_gain(base[:1] + 0.1, base[:1], 2.0)[2]  # one trial proves nothing
    assert not confident_gain(base - 0.01, base, 2.0)[2]


def test_validation_is_scored_over_the_evaluation_mask(tiny_trials):
    """Step 0's validation score is docs/design.md 3.3's pixel_corr of ridge alone over `val_mask`, not the
    full-frame value (the held-out trials are scored over the mask)."""
    from rtdecode import metrics

    dec, net, pairs, val = _residual_setup(tiny_trials)
    mask = np.zeros(dec.frame_shape, bool)
    mask[: dec.frame_shape[0] // 2, : dec.frame_shape[1] // 3] = True
    info = am.train_amortized(net, [("true_frames", pairs, 10)], lr=0.0, val=val, eval_every=10, val_mask=mask)
    pairs_val = [(dec.predict_trial(r), v) for r, v in zip(*val)]
    step0 = info["phases"][-1]["history"][0]["val_pixel_corr"]
    assert step0 == pytest.approx(metrics.score(pairs_val, mask)["pixel_corr"], abs=1e-4)
    assert step0 != pytest.approx(metrics.score(pairs_val, None)["pixel_corr"], abs=1e-4)
