"""Ridge's brightness share chosen on out-of-fold reconstructions of every train trial
(ridge.fit brightness_choice="oof") instead of with the penalty on the validation trials."""

import numpy as np
import pytest

from rtdecode import metrics
from rtdecode.decode import crossfit, ridge
from rtdecode.errors import ConfigError


def _fit(tiny_trials, **kw):
    fit, val = tiny_trials[:4], tiny_trials[4:6]
    return ridge.fit(lambda: ((t[0], t[1]) for t in fit), lambda: ((t[0], t[1]) for t in val), **kw)


def test_the_oof_scores_are_crossfit_reconstructions_of_every_trial(tiny_trials):
    mask = np.zeros(tiny_trials[0][1].shape[1:], bool); mask[4:-4, 8:-8] = True
    dec, info = _fit(tiny_trials, mask=mask, brightness_choice="oof", oof_folds=3)
    assert info["brightness_choice"] == "oof" and info["oof_folds"] == 3
    oof = info["brightness_oof"]
    assert set(oof) == {str(k) for k in ridge.BRIGHTNESS_KEEP}
    assert info["brightness_keep"] == max(ridge.BRIGHTNESS_KEEP, key=lambda k: (oof[str(k)], k))
    # the same numbers from crossfit.out_of_fold over all 6 trials (the 4 fit and the 2 validation
    # ones), each share folded into its fold decoders
    every = [(t[0], t[1]) for t in tiny_trials[:6]]
    for keep in ridge.BRIGHTNESS_KEEP:
        preds = crossfit.out_of_fold(every, dec, info["alpha"], keep, 3, lambda d, r: d.predict_trial(r))
        expect = metrics.score([(p, v) for p, (_, v) in zip(preds, every)], mask)["pixel_corr"]
        assert oof[str(keep)] == pytest.approx(expect, abs=1e-4)
    # scored on the fit trials only, the numbers differ: the validation trials are in
    only_fit = crossfit.out_of_fold(every[:4], dec, info["alpha"], 1.0, 3, lambda d, r: d.predict_trial(r))
    assert metrics.score([(p, v) for p, (_, v) in zip(only_fit, every[:4])], mask)["pixel_corr"] != \
        pytest.approx(oof["1.0"], abs=1e-4)


@pytest.mark.parametrize("pick", ["validation's", 0.0, 1.0])
def test_the_live_decoder_is_the_validation_one_with_another_share(tiny_trials, monkeypatch, pick):
    val_dec, val_info = _fit(tiny_trials)
    assert val_info["brightness_choice"] == "validation" and "brightness_oof" not in val_info
    share = val_info["brightness_keep"] if pick == "validation's" else pick
    monkeypatch.setattr(ridge, "_oof_brightness", lambda *a, **kw: {str(k): -abs(k - share)
                                                                    for k in ridge.BRIGHTNESS_KEEP})
    dec, info = _fit(tiny_trials, brightness_choice="oof")
    assert info["brightness_keep"] == share and info["brightness_keep_validation"] == val_info["brightness_keep"]
    # window, penalty, normalisation and the input side of the rank-128 factors are the validation fit's
    assert (info["alpha"], info["window"]) == (val_info["alpha"], val_info["window"])
    np.testing.assert_array_equal(dec.weights, val_dec.weights)
    np.testing.assert_array_equal(dec.act_mean, val_dec.act_mean)
    resp = tiny_trials[6][0]
    m = ridge.brightness_vector(dec.frame_shape)
    a = dec.predict_trial(resp).reshape(resp.shape[1], -1) - dec.pixel_mean
    b = val_dec.predict_trial(resp).reshape(resp.shape[1], -1) - val_dec.pixel_mean
    if share == val_info["brightness_keep"]:
        np.testing.assert_array_equal(a, b)
    # the brightness-free part of every frame is the same; only the share of brightness kept differs
    np.testing.assert_allclose(a - (a @ m)[:, None], b - (b @ m)[:, None], rtol=1e-4, atol=1e-3)
    if share != val_info["brightness_keep"] and val_info["brightness_keep"] > 0:
        np.testing.assert_allclose((a @ m) * val_info["brightness_keep"], (b @ m) * share, rtol=1e-3, atol=1e-3)


def test_oof_with_one_share_does_nothing_more_and_bad_choices_are_refused(tiny_trials, monkeypatch):
    def boom(*a, **kw):
        raise AssertionError("no share to choose")

    monkeypatch.setattr(ridge, "_oof_brightness", boom)
    dec, info = _fit(tiny_trials, brightness_choice="oof", brightness_keep=(1.0,))
    assert info["brightness_keep"] == 1.0 and "brightness_oof" not in info
    with pytest.raises(ConfigError, match="brightness_choice"):
        _fit(tiny_trials, brightness_choice="last")


def test_fit_dataset_passes_the_choice_to_ridge_and_records_it(tiny_dataset, tmp_path):
    from rtdecode.offline.fit import fit_dataset

    card = fit_dataset(tiny_dataset, tmp_path / "m", "ridge", 60, progress=False, lag_min=0, bins=8,
                       brightness_keep=(0.0, 1.0), brightness_choice="oof")
    tr = card.training
    assert tr["brightness_choice"] == "oof" and set(tr["brightness_oof"]) == {"0.0", "1.0"}
    assert tr["brightness_keep"] == max((0.0, 1.0), key=lambda k: (tr["brightness_oof"][str(k)], k))
    with pytest.raises(ConfigError, match="ridge only"):
        fit_dataset(tiny_dataset, tmp_path / "a", "amortized", 60, progress=False, brightness_choice="oof")
