"""The image-prior amortized decoder: cross-fitted linear frames, identity at start, one graph live."""

import json

import numpy as np
import pytest
import torch

from rtdecode.decode import amortized as am
from rtdecode.decode import crossfit
from rtdecode.decode import image_prior as ip
from rtdecode.decode import methods
from rtdecode.decode import ridge
from rtdecode.errors import ConfigError, ModelError


def _ridge_on(trials, **kw):
    return ridge.fit(lambda: ((t[0], t[1]) for t in trials[:4]), lambda: ((t[0], t[1]) for t in trials[4:6]), **kw)


def _net(dec, **cfg):
    net = ip.ImagePriorNet(len(dec.act_mean), dec.basis.shape[0], dec.basis.shape[1], dec.weights.shape[1],
                           dec.frame_shape, ip.ImagePriorConfig(**cfg))
    net.set_linear(dec)
    return net.eval()


def test_starts_as_the_ridge_decoder_on_its_wider_window(tiny_trials):
    dec, _ = _ridge_on(tiny_trials)
    net = _net(dec, back=3, fwd=2)
    assert net.bins == dec.basis.shape[0] + 5 and net.lag_min == dec.lag_min - 3
    resp = tiny_trials[6][0]
    np.testing.assert_allclose(am.predict_trial(net, resp), dec.predict_trial(resp), rtol=1e-4, atol=1e-2)
    # live: the window of frame 20 holds bins 20-3 .. 20+2+bins-1; its output is ridge's frame 20
    out = np.empty(dec.frame_shape, np.float32)
    dec.predict_window(resp[:, 20:20 + dec.basis.shape[0]], out)
    with torch.no_grad():
        y = net(torch.from_numpy(resp[None, :, 17:17 + net.bins]))[0].numpy()
    np.testing.assert_allclose(y, out, rtol=1e-4, atol=1e-2)


def test_linear_frames_are_the_clips_the_network_sees(tiny_trials):
    """Training uses precomputed linear frames (`linear_frames` + `clips`); live, the network computes
    them from the window: both must be the same numbers, at the trial's edges too."""
    dec, _ = _ridge_on(tiny_trials)
    net = _net(dec)
    torch.manual_seed(0)
    with torch.no_grad():  # a non-identity U-Net, so the clip's every frame matters
        for p in net.unet.parameters():
            p.normal_(0, 0.05)
    resp = tiny_trials[6][0]
    c = ip.clips(ip.linear_frames(dec, resp, net.cfg.back, net.cfg.fwd), net.cfg.back, net.cfg.fwd)
    with torch.no_grad():
        from_clips = net.refine(torch.from_numpy(c)).numpy()
    np.testing.assert_allclose(am.predict_trial(net, resp), from_clips, rtol=1e-4, atol=2e-2)


def test_out_of_fold_frames_come_from_a_ridge_that_did_not_see_the_trial(tiny_trials):
    trials = [(t[0], t[1]) for t in tiny_trials[:6]]
    dec, info = _ridge_on(tiny_trials)
    oof = crossfit.out_of_fold(trials, dec, info["alpha"], info["brightness_keep"], 3, lambda d, r: d)
    which = crossfit.fold_of(6, 3)
    for k in range(3):
        # the fold decoder of trial k, refitted by hand on the other folds' trials: the same weights
        others = [trials[i] for i in range(6) if which[i] != k]
        G = C = 0
        for r, v in others:
            z = ((ridge.compress(r, dec.act_scale).T - dec.act_mean) / dec.act_std).astype(np.float32)
            x = ridge.window_features(z, dec.basis, dec.lag_min)
            G = G + x.T.astype(np.float64) @ x
            C = C + x.T.astype(np.float64) @ (v.reshape(len(v), -1) - dec.pixel_mean)
        w = ridge._solve(G, C, info["alpha"] * float(np.mean(np.diag(G))), keep=False)
        w, w_out = ridge.truncate_weights(w, dec.weights.shape[1] if dec.w_out is not None else None,
                                          info["brightness_keep"], ridge.brightness_vector(dec.frame_shape))
        full = w if w_out is None else w @ w_out
        got = oof[k].weights if oof[k].w_out is None else oof[k].weights @ oof[k].w_out
        np.testing.assert_allclose(got, full, rtol=1e-3, atol=1e-3 * float(np.abs(full).max()))
    assert not np.allclose(oof[0].predict_trial(trials[0][0]), dec.predict_trial(trials[0][0]))
    with pytest.raises(ConfigError, match="folds"):
        crossfit.fold_of(6, 7)


def test_training_keeps_the_linear_decoder_unless_validation_agrees(tiny_trials):
    dec, _ = _ridge_on(tiny_trials)
    net = _net(dec, steps=6, eval_every=3, batch=4)
    pairs = [(ip.linear_frames(dec, t[0], 4, 4), t[1]) for t in tiny_trials[:6]]
    info = ip.train(net, pairs[:4], pairs[4:])
    hist = info["history"]
    assert [h["step"] for h in hist] == [0, 3, 6]
    eligible = [h for h in hist if h["step"] == 0 or h["confident"]]
    # the default gate ("halves_twice") wants two validations in a row: never the first one
    assert net.cfg.gate == "halves_twice" and not hist[1]["confident"]
    assert hist[2]["confident"] == ip.gate_passes(hist[2]["val_trial_gains"], hist[1]["val_trial_gains"],
                                                  "halves_twice", net.cfg.min_gain_z)
    assert info["val_pixel_corr"] == max(h["val_pixel_corr"] for h in eligible)
    if info["best_step"] == 0:  # kept the linear decoder: the U-Net's last layer is zero again
        assert float(net.unet.out.weight.detach().abs().max()) == 0.0


def test_default_amortized_fit_exports_with_onnx_parity(tiny_model, tmp_path):
    import shutil

    pytest.importorskip("onnxruntime")
    from rtdecode import decode
    from rtdecode.decode import export

    out, card = tiny_model
    assert card.amortized["kind"] == "image_prior" and card.amortized["steps"] == 40
    assert card.training["amortized"]["folds"] == 5 and card.training["amortized"]["history"][0]["step"] == 0
    folder = tmp_path / "m"
    shutil.copytree(out, folder)
    entry = export.export_onnx(folder)
    assert entry["parity_max_rel_err"] < 1e-4
    # the live decoder fills the ring before the first frame with the ridge's training mean
    from rtdecode.decode import model as model_dir

    c, arrays = model_dir.load(folder)
    fill = methods.window_fill(arrays, c)
    net = decode.load(folder)[1].net
    np.testing.assert_allclose(fill, ridge.raw_fill(net.act_mean[:, 0].numpy(), float(net.act_scale[0])))


def test_a_card_that_disagrees_with_its_weights_is_refused(tiny_model, tmp_path):
    import shutil

    from rtdecode import decode

    folder = tmp_path / "m"
    shutil.copytree(tiny_model[0], folder)
    card = json.loads((folder / "card.json").read_text())
    card["method_settings"]["amortized"]["amortized"]["back"] = 2
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="window should have"):
        decode.load(folder)
    settings = card["method_settings"]["amortized"]
    settings["amortized"] = {**settings["amortized"], "back": 4, "depth": 3}
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="unknown setting"):
        decode.load(folder)


def test_legacy_options_are_refused_with_the_image_prior(tiny_dataset, tmp_path):
    from rtdecode.offline.fit import fit_dataset

    with pytest.raises(ConfigError, match="ridge_residual"):
        fit_dataset(tiny_dataset, tmp_path / "m", method="amortized", progress=False, encoder_steps=0, inverse_trials=2)


def test_synthetic_movies_need_the_encoder(tiny_dataset, tmp_path):
    from rtdecode.offline.fit import fit_dataset

    with pytest.raises(ConfigError, match="encoder"):
        fit_dataset(tiny_dataset, tmp_path / "m", method="amortized", progress=False, encoder_steps=0, synth_movies=2)


def test_uncertainty_is_the_fold_ensembles_spread(tiny_model, tiny_dataset, tmp_path):
    from rtdecode import decode
    from rtdecode.offline.reconstruct import reconstruct

    dec = decode.load(tiny_model[0])[1]
    w_in, w_out = dec.folds
    assert len(w_in) == 5
    resp = np.load(tiny_dataset / "data" / "responses" / "6.npy")
    resp = resp[:, np.isfinite(resp).all(0)]
    sp = dec.uncertainty_trial(resp)
    assert sp.shape == (resp.shape[1], 36, 64) and (sp >= 0).all() and sp.max() > 0
    # by hand at one frame: the standard deviation over the folds' ridge frames
    ridges = [ridge.RidgeDecoder(dec.net.act_mean[:, 0].numpy(), dec.net.act_std[:, 0].numpy(), dec.net.basis.numpy(),
                                 wi, dec.net.pixel_mean.numpy(), (36, 64), dec.lag_min + dec.net.cfg.back, wo,
                                 float(dec.net.act_scale[0])) for wi, wo in zip(w_in, w_out)]
    frames = np.stack([r.predict_trial(resp)[30] for r in ridges])
    np.testing.assert_allclose(sp[30], frames.std(0, ddof=1), rtol=1e-3, atol=1e-3)  # unbiased, as torch.std
    m = reconstruct(tiny_model[0], tiny_dataset, tmp_path / "r", progress=False, uncertainty=True)
    cal = m["uncertainty"]
    assert len(cal["bins"]) == 5 and -1 <= cal["corr_spread_abs_error"] <= 1
    assert [b["mean_spread"] for b in cal["bins"]] == sorted(b["mean_spread"] for b in cal["bins"])
    assert np.load(tmp_path / "r" / "uncertainty" / "6.npy").shape == np.load(tiny_dataset / "data" / "videos" / "6.npy").shape


def test_its_linear_path_chooses_the_window_as_method_ridge_does(tiny_model):
    from rtdecode.decode import ridge as R

    _, card = tiny_model  # fitted with neither bins nor lag_min: the ridge windows compete on validation
    rinfo = card.training["amortized"]["ridge"]
    offered = sorted((c["lag_min"], c["bins"]) for c in rinfo["choice_search"])
    assert offered == sorted(R.WINDOWS)
    best = max(rinfo["choice_search"], key=lambda c: c["val_pixel_corr"])
    back = card.amortized["back"]
    # the network's window is the chosen ridge window widened by its clip of linear frames
    assert card.window.lag_min == best["lag_min"] - back
    assert card.window.bins == best["bins"] + back + card.amortized["fwd"]


def test_a_zero_mean_correction_leaves_every_frame_mean_unchanged(tiny_trials):
    dec, _ = _ridge_on(tiny_trials)
    torch.manual_seed(0)
    clip = torch.from_numpy(ip.clips(ip.linear_frames(dec, tiny_trials[6][0], 4, 4), 4, 4)[:20])
    outs = {}
    for zm in (False, True):
        net = _net(dec, zero_mean=zm)
        torch.manual_seed(1)
        with torch.no_grad():  # the same non-identity U-Net for both
            for p in net.unet.parameters():
                p.normal_(0, 0.05)
            outs[zm] = net.refine(clip).numpy().astype(np.float64)
    centre = clip[:, 4].numpy().astype(np.float64)
    # without the option the correction moves each frame's mean; with it, only the pattern changes
    assert np.abs(outs[False].mean((1, 2)) - centre.mean((1, 2))).max() > 0.1
    np.testing.assert_allclose(outs[True].mean((1, 2)), centre.mean((1, 2)), atol=1e-3)
    assert not np.allclose(outs[True], centre, atol=1e-2)


def test_the_masked_loss_ignores_pixels_outside_the_mask():
    g = torch.Generator().manual_seed(0)
    pred, y = torch.rand(3, 36, 64, generator=g) * 255, torch.rand(3, 36, 64, generator=g) * 255
    mask = torch.zeros(36, 64, dtype=torch.bool)
    mask[8:28, 16:48] = True
    y2 = torch.where(mask, y, 255.0 - y)  # outside the mask: another target
    for loss in ip.LOSSES:
        assert float(ip.loss_of(pred, y, loss, mask)) == float(ip.loss_of(pred, y2, loss, mask))
        assert float(ip.loss_of(pred, y, loss)) != float(ip.loss_of(pred, y2, loss))
    assert abs(float(ip.loss_of(y, y, "corr"))) < 1e-6 and float(ip.loss_of(y, y)) == 0.0
    with pytest.raises(ModelError, match="loss"):
        ip.loss_of(pred, y, "l1")


def test_the_gate_wants_the_gain_on_both_halves_and_twice():
    split = [0.05] * 6 + [-0.001] * 6  # confident over all 12 trials, but the second half lost
    steady = [0.03, 0.02, 0.025, 0.035, 0.02, 0.03] * 2
    assert ip.gate_passes(split, None, "z", 2.0)
    assert not ip.gate_passes(split, None, "halves", 2.0)
    assert ip.gate_passes(steady, None, "halves", 2.0)
    assert not ip.gate_passes(steady, None, "twice", 2.0)  # no earlier validation
    assert not ip.gate_passes(steady, [0.01, -0.02] * 6, "twice", 2.0)
    assert ip.gate_passes(steady, steady, "halves_twice", 2.0)
    assert not ip.gate_passes(steady, split, "halves_twice", 2.0)
    assert not ip.gate_passes([-x for x in steady], None, "z", 2.0)
    with pytest.raises(ModelError, match="gate"):
        ip.gate_passes(steady, None, "vote", 2.0)
