"""Ridge's brightness shrinkage: a share of each decoded frame's brightness (its mean over the
frame) kept, chosen with the penalty on the validation trials (scored over the evaluation mask),
folded into the weights."""

import numpy as np
import pytest

from rtdecode.decode import ridge
from rtdecode.errors import ConfigError


def _fit(tiny_trials, **kw):
    fit, val = tiny_trials[:4], tiny_trials[4:6]
    return ridge.fit(lambda: ((t[0], t[1]) for t in fit), lambda: ((t[0], t[1]) for t in val), **kw)


@pytest.mark.parametrize("keep", [0.0, 0.3, 1.0])
def test_folded_weights_equal_the_shrinkage_of_the_output(keep):
    dec = ridge.random_decoder(50, bins=8, frame_shape=(6, 10), rank=12, seed=1)
    m = ridge.brightness_vector((6, 10))
    resp = np.random.default_rng(2).gamma(0.5, 2.0, (50, 40)).astype(np.float32)
    y = dec.predict_trial(resp).reshape(40, -1) - dec.pixel_mean
    expect = y - (1.0 - keep) * (y @ m)[:, None]
    dec.w_out = ridge.shrink_brightness(dec.w_out, m, keep)
    got = dec.predict_trial(resp).reshape(40, -1) - dec.pixel_mean
    np.testing.assert_allclose(got, expect, rtol=1e-4, atol=1e-3)
    if keep == 0.0:  # every frame has the training brightness over the mask
        np.testing.assert_allclose(got @ m, 0.0, atol=1e-3)


def test_fit_chooses_penalty_and_share_together_on_the_masked_validation_score(tiny_trials):
    mask = np.zeros(tiny_trials[0][1].shape[1:], bool); mask[4:-4, 8:-8] = True
    dec, info = _fit(tiny_trials, mask=mask)
    assert info["brightness_keep"] in ridge.BRIGHTNESS_KEEP
    scores = [(s, row["alpha"], float(k)) for row in info["alpha_search"] for k, s in row["val_pixel_corr"].items()]
    best = max(scores)
    assert (info["alpha"], info["brightness_keep"]) == (best[1], best[2])
    # keeping all brightness is the fit as it was: the same penalty search, no shrinkage
    plain, pinfo = _fit(tiny_trials, mask=mask, brightness_keep=(1.0,))
    assert pinfo["brightness_keep"] == 1.0
    assert [r["val_pixel_corr"]["1.0"] for r in pinfo["alpha_search"][:5]] == \
        [r["val_pixel_corr"]["1.0"] for r in info["alpha_search"][:5]]


def test_bad_shares_and_masks_are_refused(tiny_trials):
    with pytest.raises(ConfigError, match="brightness_keep"):
        _fit(tiny_trials, brightness_keep=(0.5, 1.5))
    with pytest.raises(ConfigError, match="evaluation mask"):
        _fit(tiny_trials, mask=np.ones((3, 3), bool))
