"""Ridge choices made on the validation trials: the activity compression (on or off, chosen with the
penalty and the brightness share), recorded in the training info; a window reaching into the past."""

import numpy as np
import pytest

from rtdecode.decode import ridge
from rtdecode.errors import ConfigError


def _fit(tiny_trials, **kw):
    fit, val = tiny_trials[:4], tiny_trials[4:6]
    return ridge.fit(lambda: ((t[0], t[1]) for t in fit), lambda: ((t[0], t[1]) for t in val), **kw)


_FITS = {}


def _fit_once(tiny_trials, **kw):
    """_fit, each set of options fitted once in this module (several tests compare the same fits; the
    tiny trials are the session's). Not for a test that patches ridge."""
    key = tuple(sorted(kw.items()))
    if key not in _FITS:
        _FITS[key] = _fit(tiny_trials, **kw)
    return _FITS[key]


def test_compression_is_chosen_by_the_best_validation_score_and_recorded(tiny_trials):
    dec, info = _fit_once(tiny_trials, compress_scale=(6.0, 0.0))
    search = info["choice_search"]
    assert [s["compress"] for s in search] == [6.0, 0.0]
    best = max(search, key=lambda s: s["val_pixel_corr"])
    assert info["compress"] == best["compress"]
    assert (info["alpha"], info["brightness_keep"]) == (best["alpha"], best["brightness_keep"])
    assert (dec.act_scale > 0) == (best["compress"] > 0)
    # each candidate's score is that of the fit with only it on offer
    for s in search:
        _, one = _fit_once(tiny_trials, compress_scale=s["compress"])
        assert "choice_search" not in one
        top = max(v for row in one["alpha_search"] for v in row["val_pixel_corr"].values())
        assert s["val_pixel_corr"] == pytest.approx(top, abs=1e-9)
        assert (one["alpha"], one["act_scale"]) == (s["alpha"], s["act_scale"])


def test_the_chosen_fit_is_the_single_fit_of_that_choice(tiny_trials):
    dec, info = _fit_once(tiny_trials, compress_scale=(6.0, 0.0))
    alone, _ = _fit_once(tiny_trials, compress_scale=info["compress"])
    resp = tiny_trials[6][0]
    np.testing.assert_allclose(dec.predict_trial(resp), alone.predict_trial(resp), rtol=1e-4, atol=1e-3)


def test_a_choice_that_loses_on_validation_is_not_taken(tiny_trials, monkeypatch):
    # scores rigged so compression off wins: the decoder must come out uncompressed
    real = ridge._search

    def rigged(*a, **kw):
        out = real(*a, **kw)
        out["score"] = 1.0 if a[2] == 0.0 else -1.0
        return out

    monkeypatch.setattr(ridge, "_search", rigged)
    dec, info = _fit(tiny_trials, compress_scale=(6.0, 0.0))
    assert info["compress"] == 0.0 and dec.act_scale == 0.0 and "act_scale" not in dec.arrays()


@pytest.mark.parametrize("bad", [(-1.0,), (float("nan"),), ()])
def test_bad_compression_values_are_refused(tiny_trials, bad):
    with pytest.raises(ConfigError, match="compress"):
        _fit(tiny_trials, compress_scale=bad)


def test_a_window_into_the_past_decodes_live_as_offline(tiny_trials):
    dec, info = _fit(tiny_trials, lag_min=-4, bins=12, compress_scale=(6.0, 0.0))
    resp = tiny_trials[6][0]
    full = dec.predict_trial(resp)
    out = np.empty(dec.frame_shape, np.float32)
    f = 20  # the frame's window: bins f-4 .. f+7
    dec.predict_window(np.ascontiguousarray(resp[:, f - 4:f + 8]), out)
    np.testing.assert_allclose(out, full[f], rtol=1e-4, atol=1e-2)


def test_fit_dataset_ridge_chooses_its_window_on_validation_and_records_it(tiny_dataset, tmp_path):
    from rtdecode import decode
    from rtdecode.offline.fit import fit_dataset

    card = fit_dataset(tiny_dataset, tmp_path / "m", "ridge", 60, progress=False)
    tr = card.training
    search = tr["choice_search"]
    assert [(s["lag_min"], s["bins"]) for s in search] == [tuple(w) for w in ridge.WINDOWS] == [(0, 8), (-4, 12)]
    best = max(search, key=lambda s: s["val_pixel_corr"])
    assert tr["window"] == [best["lag_min"], best["bins"]] == [card.window.lag_min, card.window.bins]
    assert tr["alpha"] == best["alpha"] and tr["compress"] == ridge.COMPRESS and tr["validation_split"] == "last"
    loaded, dec = decode.load(tmp_path / "m")
    assert dec.lag_min == card.window.lag_min and dec.basis.shape[0] == card.window.bins and dec.act_scale > 0
    # every window ends at f+7: the live decoder waits as long as before
    assert {lm + b - 1 for lm, b in ridge.WINDOWS} == {7}
    # an explicit window is used as given, compressions may be offered too
    card = fit_dataset(tiny_dataset, tmp_path / "c", "ridge", 60, progress=False, lag_min=-4, bins=12,
                       compress=(6.0, 0.0))
    tr = card.training
    assert [(s["lag_min"], s["bins"], s["compress"]) for s in tr["choice_search"]] == [(-4, 12, 6.0), (-4, 12, 0.0)]
    assert tr["compress"] == max(tr["choice_search"], key=lambda s: s["val_pixel_corr"])["compress"]


def test_the_chosen_window_scores_best_on_validation(tiny_trials):
    dec, info = _fit(tiny_trials, windows=((0, 8), (-4, 12)))
    for s in info["choice_search"]:
        _, one = _fit(tiny_trials, lag_min=s["lag_min"], bins=s["bins"])
        top = max(v for row in one["alpha_search"] for v in row["val_pixel_corr"].values())
        assert s["val_pixel_corr"] == pytest.approx(top, abs=1e-9)
    best = max(info["choice_search"], key=lambda s: s["val_pixel_corr"])
    assert (dec.lag_min, dec.basis.shape[0]) == (best["lag_min"], best["bins"])


def test_an_old_ridge_model_still_loads(tiny_dataset, tmp_path):
    """A card written before this change: window (0, 8), no 'compress' in its training info."""
    import json

    from rtdecode import decode
    from rtdecode.offline.fit import fit_dataset

    fit_dataset(tiny_dataset, tmp_path / "m", "ridge", 60, progress=False, lag_min=0, bins=8, compress=6.0)
    path = tmp_path / "m" / "card.json"
    card = json.loads(path.read_text())
    for k in ("compress", "validation_split"):
        card["training"].pop(k, None)
    path.write_text(json.dumps(card))
    loaded, dec = decode.load(tmp_path / "m")
    assert (loaded.window.lag_min, loaded.window.bins) == (0, 8) and dec.act_scale > 0
    resp = np.load(tiny_dataset / "data" / "responses" / "0.npy")[:60]
    assert np.isfinite(dec.predict_trial(resp)).all()


def test_the_command_line_takes_one_or_several_compressions(tiny_dataset, tmp_path):
    import json

    from rtdecode.cli import main

    assert main(["fit", str(tiny_dataset), "--out", str(tmp_path / "a"), "--method", "ridge", "--neurons-subset", "40",
                 "--compress", "0", "--lag-min", "0", "--window", "8"]) == 0
    a = json.loads((tmp_path / "a" / "card.json").read_text())
    assert a["training"]["compress"] == 0.0 and "choice_search" not in a["training"]
    assert (a["window"]["lag_min"], a["window"]["bins"]) == (0, 8)
    assert main(["fit", str(tiny_dataset), "--out", str(tmp_path / "b"), "--method", "ridge", "--neurons-subset", "40",
                 "--compress", "3", "0"]) == 0
    b = json.loads((tmp_path / "b" / "card.json").read_text())
    assert [(s["lag_min"], s["bins"], s["compress"]) for s in b["training"]["choice_search"]] == [
        (0, 8, 3.0), (0, 8, 0.0), (-4, 12, 3.0), (-4, 12, 0.0)]
