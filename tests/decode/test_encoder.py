"""The dynamic encoder learns the virtual population and beats a constant predictor."""

import numpy as np

from rtdecode.decode import encoder as E


def test_encoder_beats_constant_on_held_out(tiny_encoder, tiny_trials):
    model, info, tr, va = tiny_encoder
    te = E.TrialData([t[1] for t in tiny_trials[6:]], [t[2] for t in tiny_trials[6:]], [t[0] for t in tiny_trials[6:]])
    assert E.poisson_nll(model, te) < E.constant_corr_baseline(tr, te)
    corr = E.sensorium_corr(model, te)
    assert corr.shape == (200,) and np.isfinite(corr).all()
    assert corr.mean() > 0.03  # a constant has no correlation at all


def test_population_mask_covers_the_receptive_fields(tiny_encoder):
    from rtdecode.rig import rf_patch_mask

    model = tiny_encoder[0]
    m = model.population_mask()
    assert m.shape == (36, 64) and m.min() >= 0 and m.max() <= 1
    patch = rf_patch_mask()
    assert m[patch].mean() > 2 * m[~patch].mean()


def test_encoder_save_load_roundtrip(tiny_encoder):
    import torch

    model = tiny_encoder[0]
    arr = E.state_arrays(model, "encoder0.")
    back = E.from_arrays(arr, "encoder0.", model.n_neurons, model.frame_shape, vars(model.cfg))
    v = torch.zeros(1, 12, 36, 64); b = torch.zeros(1, 12, 4)
    assert torch.allclose(model(v, b), back(v, b))


def test_readout_of_later_frames_only_matches_the_full_readout(tiny_encoder):
    """`first=k` (used in training and by the inverse) gives exactly the frames k.. of a full pass."""
    import torch

    model = tiny_encoder[0]
    g = torch.Generator().manual_seed(3)
    v = torch.randn(2, 20, 36, 64, generator=g); b = torch.randn(2, 20, 4, generator=g)
    with torch.no_grad():
        full = model(v, b)
        part = model(v, b, first=model.cfg.context)
    assert part.shape == (2, 20 - model.cfg.context, model.n_neurons)
    assert torch.allclose(part, full[:, model.cfg.context:], atol=1e-6)
