"""Synthetic pairs for the image prior (rtdecode.decode.synthetic): encoder + residual noise + ridge."""

import numpy as np
import pytest
import torch

from rtdecode.decode import image_prior as ip
from rtdecode.decode import ridge
from rtdecode.decode import synthetic as S
from rtdecode.errors import ConfigError
from rtdecode.stimuli import procedural


def _short(tiny_trials, n=40):
    return [(t[0][:, :n], t[1][:n], t[2][:n]) for t in tiny_trials]


def test_bootstrap_noise_keeps_the_calibration_statistics(tiny_encoder, tiny_trials):
    model = tiny_encoder[0]
    trials = _short(tiny_trials)[:5]
    resid = S.residuals([model], trials)
    assert resid[0].shape == trials[0][0].T.shape
    rng = np.random.default_rng(0)
    # the calibration movies themselves, through the model and the bootstrap: activity like the recorded
    acts = [S.synth_activity([model], t[1], trials, resid, rng) for t in trials]
    assert all(a.shape == trials[0][0].shape and (a >= 0).all() for a in acts)
    cmp = S.compare_stats(acts, [t[0] for t in trials])
    assert 0.7 < cmp["mean_ratio_median"] < 1.4 and 0.7 < cmp["sd_ratio_median"] < 1.4
    g = [S.synth_activity([model], t[1], trials, resid, rng, noise="gaussian") for t in trials]
    assert np.isfinite(np.concatenate(g, 1)).all()
    with pytest.raises(ConfigError, match="noise"):
        S.synth_activity([model], trials[0][1], trials, resid, rng, noise="poissonish")


def test_synth_pairs_are_linear_frames_of_procedural_movies(tiny_encoder, tiny_trials):
    trials = _short(tiny_trials)
    dec, _ = ridge.fit(lambda: ((t[0], t[1]) for t in trials[:4]), lambda: ((t[0], t[1]) for t in trials[4:6]))
    movies = procedural.movies(2, 30, seed=0, shape=dec.frame_shape)
    pairs = S.synth_pairs(dec, [tiny_encoder[0]], trials[:5], movies, 2, 1, seed=0)
    assert len(pairs) == 2
    for (f, m), mv in zip(pairs, movies):
        assert f.shape == (2 + 30 + 1,) + dec.frame_shape and np.isfinite(f).all()
        np.testing.assert_array_equal(m, mv)
    with pytest.raises(ConfigError, match="encoder"):
        S.synth_pairs(dec, [], trials[:5], movies, 2, 1)


def test_train_pretrains_then_validates_the_pretrained_network(tiny_trials):
    trials = _short(tiny_trials)
    dec, _ = ridge.fit(lambda: ((t[0], t[1]) for t in trials[:4]), lambda: ((t[0], t[1]) for t in trials[4:6]))
    cfg = ip.ImagePriorConfig(back=1, fwd=1, steps=4, eval_every=2, pretrain_steps=3, synth_movies=2, batch=4)
    net = ip.ImagePriorNet(len(dec.act_mean), dec.basis.shape[0], dec.basis.shape[1], dec.weights.shape[1],
                           dec.frame_shape, cfg)
    net.set_linear(dec)
    pairs = [(ip.linear_frames(dec, t[0], 1, 1), t[1]) for t in trials]
    rng = np.random.default_rng(0)
    synth = [(ip.linear_frames(dec, np.abs(rng.normal(size=t[0].shape)).astype(np.float32), 1, 1), t[1])
             for t in trials[:2]]
    info = ip.train(net, pairs[:4], pairs[4:6], pretrain_pairs=synth, say=lambda s: None)
    steps = [h["step"] for h in info["history"]]
    assert steps == [0, "pretrained", 2, 4]
    assert info["pretrain_steps"] == 3 and info["kept"] in ("linear", "pretrained", "finetuned")
    # without pairs (or with pretrain_steps 0) nothing changes: no 'pretrained' entry
    net2 = ip.ImagePriorNet(len(dec.act_mean), dec.basis.shape[0], dec.basis.shape[1], dec.weights.shape[1],
                            dec.frame_shape, cfg)
    net2.set_linear(dec)
    info2 = ip.train(net2, pairs[:4], pairs[4:6], say=lambda s: None)
    assert [h["step"] for h in info2["history"]] == [0, 2, 4] and "pretrain_steps" not in info2


def test_fit_pipeline_pretrains_the_image_prior_on_synthetic_movies(tiny_trials):
    from rtdecode.decode.pipeline import fit_pipeline

    trials = [t[:3] for t in _short(tiny_trials, 60)]
    torch.manual_seed(0)
    dec, arrays, fields = fit_pipeline(trials[:4], trials[4:6], encoder_steps=4, synth_movies=2,
                                       amortized_steps=(0, 2), amortized_cfg=ip.ImagePriorConfig(back=1, fwd=1, folds=2,
                                                                                                 eval_every=1, batch=4))
    info = fields["training_pipeline"]["amortized"]
    assert fields["amortized"]["synth_movies"] == 2 and fields["amortized"]["pretrain_steps"] == 2
    assert info["pretrain_movies"] == 2 and info["synth_noise"] == S.NOISE
    assert "pretrained" in [h["step"] for h in info["history"]]
    assert fields["training_pipeline"]["synth_movies"] == 0  # the older photograph path stays unused
