"""Rigid registration: known shifts, the sign convention, tracking a rendered movie."""

import numpy as np
import pytest
from scipy import ndimage

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract.register import Register, reference_from, shift_into
from rtdecode.rig.twophoton import Microscope


def smooth_image(shape=(200, 240), seed=0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.standard_normal(shape), 3) * 2000 + 1000).astype(np.float32)


def noisy_uint16(img, rng, sd=20.0):
    return np.clip(np.rint(img + rng.normal(0, sd, img.shape)), 0, 65535).astype(np.uint16)


@pytest.mark.parametrize("dy, dx", [(0, 0), (3, -5), (-7, 2), (12, 11), (-1, 0)])
def test_recovers_known_integer_shifts_and_undoes_them(dy, dx):
    img = smooth_image()
    rng = np.random.default_rng(1)
    reg = Register(img, crop=(128, 128))
    frame = noisy_uint16(np.roll(img, (dy, dx), axis=(0, 1)), rng)
    out = reg.out_spec.empty()
    reg.process(frame, out)
    # Convention: content moved by +(dy, dx) is reported as (dy, dx).
    assert np.all(np.abs(reg.last_shift - (dy, dx)) <= 0.5)
    inner = (slice(15, -15), slice(15, -15))
    assert np.abs(out[inner] - img[inner]).mean() < 30  # back in place, only the noise left


@pytest.mark.parametrize("shift", [(0.3, -0.7), (1.5, 2.25), (-3.4, 0.1)])
def test_sub_pixel_refinement(shift):
    img = smooth_image()
    moved = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), shift)).real
    reg = Register(img, crop=(128, 128))
    dy, dx, _ = reg.estimate(noisy_uint16(moved, np.random.default_rng(2)))
    assert abs(dy - shift[0]) < 0.3 and abs(dx - shift[1]) < 0.3


def test_shift_into_matches_roll_inside_and_repeats_edges():
    src = np.arange(30, dtype=np.float32).reshape(5, 6)
    dst = np.empty_like(src)
    shift_into(src, dst, 2, -1)
    np.testing.assert_array_equal(dst[2:, :-1], np.roll(src, (2, -1), axis=(0, 1))[2:, :-1])
    np.testing.assert_array_equal(dst[0], dst[2])  # exposed rows repeat the first valid one
    np.testing.assert_array_equal(dst[:, -1], dst[:, -2])


def test_tracks_ground_truth_motion_of_a_rendered_movie():
    m = Microscope(150, seed=3, frame_shape=(256, 256), motion_px=3.0)
    movie = m.render_movie(m.poisson_spikes(200, seed=4))
    truth = m.truth["shifts"]
    assert np.unique(truth, axis=0).shape[0] > 5
    out = np.empty(m.frame_shape, np.float32)

    # Against the motion-free mean image (suite2p's meanImg): the very shifts applied.
    reg = Register(m.mean_image)
    est = np.empty_like(truth)
    for t, f in enumerate(movie):
        reg.process(f, out)
        est[t] = reg.last_shift
    assert np.abs(est - truth).max() <= 0.5

    # Against a reference built from the movie itself: the same up to a constant offset.
    reg = Register(reference_from(movie[:60]))
    for t, f in enumerate(movie):
        reg.process(f, out)
        est[t] = reg.last_shift
    offset = np.round(np.median(est - truth, axis=0))
    assert np.mean(np.all(np.abs(est - truth - offset) <= 0.5, axis=1)) >= 0.98


def test_bad_reference_or_options_raise():
    with pytest.raises(StageError, match="NaN"):
        Register(np.full((64, 64), np.nan))
    with pytest.raises(StageError, match="2-D"):
        Register(np.zeros(64))
    with pytest.raises(ConfigError, match="max_shift"):
        Register(np.zeros((64, 64)), max_shift=40)
