"""The iterative inverse improves on its gray start."""

import numpy as np

from rtdecode import metrics
from rtdecode.decode.inverse import InverseConfig, invert, window_starts
from rtdecode.rig import rf_patch_mask


def test_window_starts_cover_the_trial():
    s = window_starts(100, 32, 8)
    assert s[0] == 0 and s[-1] == 68 and all(b - a <= 8 for a, b in zip(s, s[1:]))
    assert window_starts(20, 32, 8) == [0]


def test_inverse_improves_over_gray(tiny_encoder, tiny_trials):
    """The inverse of the encoder's own (noise-free) prediction for a held-out movie: a tiny
    problem where the recipe must recover the movie inside the population mask."""
    import torch

    from rtdecode.decode.encoder import normalise_video, predict_trial

    model = tiny_encoder[0]
    _, movie, beh, _ = tiny_trials[6]
    movie, beh = movie[:64], beh[:64]
    with torch.no_grad():
        resp = predict_trial(model, torch.from_numpy(normalise_video(movie)), torch.from_numpy(beh)).numpy().T
    mask = rf_patch_mask()
    rec, info = invert([model], resp, beh, mask=model.population_mask(), cfg=InverseConfig(iterations=20))
    assert rec.shape == movie.shape and rec.dtype == np.float32
    assert 0 <= rec.min() and rec.max() <= 255
    before = 0.0  # the gray start is constant: no correlation with anything
    after = metrics.trial_scores(rec, movie, mask, skip=10)["pixel_corr"]
    assert after > before + 0.05, (before, after)
