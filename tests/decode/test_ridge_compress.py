"""Ridge's activity compression: log1p(max(x, 0) / act_scale), saved with the model, undone for the fill."""

import numpy as np
import pytest

from rtdecode.decode import ridge
from rtdecode.decode.card import new_card
from rtdecode.errors import ModelError


def _fit(tiny_trials, **kw):
    fit, val = tiny_trials[:4], tiny_trials[4:6]
    return ridge.fit(lambda: ((t[0], t[1]) for t in fit), lambda: ((t[0], t[1]) for t in val), **kw)


def test_compress_matches_its_definition():
    x = np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32) * 3
    np.testing.assert_allclose(ridge.compress(x, 2.0), np.log1p(np.clip(x, 0, None) / 2.0), rtol=1e-6)
    np.testing.assert_array_equal(ridge.compress(x, 0.0), x)


def test_fit_sets_the_scale_from_the_mean_activity_and_saves_it(tiny_trials):
    dec, info = _fit(tiny_trials)
    mean = np.mean(np.concatenate([t[0] for t in tiny_trials[:6]], 1), dtype=np.float64)
    assert dec.act_scale == pytest.approx(ridge.COMPRESS * mean, rel=1e-5)
    assert info["act_scale"] == dec.act_scale
    card = new_card("ridge", len(dec.act_mean), 0, dec.basis.shape[0], dec.frame_shape, 30.0)
    back = ridge.RidgeDecoder.from_arrays(card, dec.arrays())
    resp = tiny_trials[6][0]
    np.testing.assert_array_equal(back.predict_trial(resp), dec.predict_trial(resp))
    # the window path, with the same compression, equals the whole-trial path
    out = np.empty(dec.frame_shape, np.float32)
    dec.predict_window(resp[:, 10:18], out)
    np.testing.assert_allclose(out, dec.predict_trial(resp)[10], rtol=1e-4, atol=1e-2)


def test_the_fill_has_zero_features(tiny_trials):
    dec, _ = _fit(tiny_trials)
    window = np.repeat(dec.fill()[:, None], dec.basis.shape[0], 1)
    out = np.empty(dec.frame_shape, np.float32)
    dec.predict_window(window, out)
    np.testing.assert_allclose(out.ravel(), dec.pixel_mean, atol=1e-2)


def test_no_compression_writes_the_old_format(tiny_trials):
    dec, info = _fit(tiny_trials, compress_scale=None)
    assert dec.act_scale == 0.0 and "act_scale" not in dec.arrays()
    np.testing.assert_array_equal(dec.fill(), dec.act_mean)


@pytest.mark.parametrize("bad", [np.array([-1.0]), np.array([np.nan]), np.array([1.0, 2.0])])
def test_a_bad_scale_in_weights_is_refused(tiny_trials, bad):
    dec, _ = _fit(tiny_trials)
    card = new_card("ridge", len(dec.act_mean), 0, dec.basis.shape[0], dec.frame_shape, 30.0)
    with pytest.raises(ModelError, match="act_scale"):
        ridge.RidgeDecoder.from_arrays(card, {**dec.arrays(), "act_scale": bad.astype(np.float32)})
