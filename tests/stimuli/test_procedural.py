"""Procedural natural-like movies (rtdecode.stimuli.procedural): no photographs, seeded, 1/f-like."""

import numpy as np
import pytest

from rtdecode.stimuli import procedural as P


@pytest.fixture(scope="module")
def two():
    return P.movies(2, 60, seed=3)


def test_shape_dtype_range_and_no_nan(two):
    for m in two:
        assert m.shape == (60, 36, 64) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 255.0
        assert m.std() > 10.0  # not a flat screen


def test_the_seed_reproduces_the_movies(two):
    again = P.movies(2, 60, seed=3)
    for a, b in zip(two, again):
        np.testing.assert_array_equal(a, b)
    other = P.movies(1, 60, seed=4)[0]
    assert not np.array_equal(other, two[0])


def test_pixel_statistics_follow_the_targets():
    m = P.movies(1, 90, seed=0, mean=110.0, std=40.0)[0]
    assert abs(m.mean() - 110.0) < 6.0 and abs(m.std() - 40.0) < 6.0
    mean, std = P.match_stats([np.full((5, 36, 64), 100.0), np.full((5, 36, 64), 140.0)])
    assert mean == pytest.approx(120.0) and std == pytest.approx(0.0)


def test_spectrum_slope_is_natural_like(two):
    """Dead leaves with r^-3 radii: an amplitude spectrum slope near natural images' (-1 to -1.6 for
    the calibration movies of both simulators, benchmarks/results/image_prior_synth.json)."""
    for m in two:
        assert -2.0 < P.spectrum_slope(m) < -0.8
    # the measure itself: white noise is flat, a smooth image steep
    rng = np.random.default_rng(0)
    assert abs(P.spectrum_slope(rng.normal(size=(4, 36, 64)))) < 0.3


def test_radii_follow_the_power_law_bounds():
    r = P.power_law_radii(20000, 2.0, 30.0, np.random.default_rng(0))
    assert r.min() >= 2.0 and r.max() <= 30.0
    # p(r) ~ r^-3: P(r > 4) = (4^-2 - 30^-2) / (2^-2 - 30^-2)
    expect = (4.0 ** -2 - 30.0 ** -2) / (2.0 ** -2 - 30.0 ** -2)
    assert abs((r > 4.0).mean() - expect) < 0.02


def test_the_eye_moves_and_stays_on_the_canvas():
    p = P.eye_path(300, (50.0, 100.0), np.random.default_rng(1))
    assert p.shape == (300, 2) and (p >= 0).all() and (p[:, 0] <= 50).all() and (p[:, 1] <= 100).all()
    jumps = np.hypot(*np.diff(p, axis=0).T)
    assert (jumps > 5).sum() >= 5  # saccades every 0.3-1 s: at least 5 in 10 s
