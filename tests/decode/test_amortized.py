"""The amortized network: static shapes, dtype, torch_module parity, window cutting."""

import json

import numpy as np
import pytest
import torch

from rtdecode.decode import amortized as am


def test_forward_shape_dtype_and_range():
    net = am.AmortizedNet(50, 8, (36, 64)).eval()
    with torch.no_grad():
        y = net(torch.rand(3, 50, 8))
    assert y.shape == (3, 36, 64) and y.dtype == torch.float32
    assert float(y.min()) >= 0 and float(y.max()) <= 255


def test_windows_match_the_live_convention():
    r = np.arange(2 * 10, dtype=np.float32).reshape(2, 10)
    w = am.windows_of_trial(r, lag_min=1, bins=3)
    assert w.shape == (10, 2, 3)
    np.testing.assert_array_equal(w[0], r[:, 1:4])
    np.testing.assert_allclose(w[8, :, 0], r[:, 9])
    np.testing.assert_allclose(w[8, :, 1], r.mean(1))  # past the trial: the neuron's mean
    ps = am.PairSet(1, 3)
    ps.add(r, np.zeros((10, 36, 64), np.float32))
    np.testing.assert_allclose(ps._window(0, 8).numpy(), w[8])


def test_torch_module_parity_with_predict(tiny_pipeline):
    dec = tiny_pipeline
    mod = dec.torch_module()
    n, bins = dec.card.neurons, dec.card.window.bins
    x = np.random.default_rng(0).poisson(0.2, (n, bins)).astype(np.float32)
    out = np.empty((36, 64), np.float32)
    dec.predict_window(x, out)
    with torch.no_grad():
        y = mod(torch.from_numpy(x)[None])
    assert y.shape == (1, 36, 64) and y.dtype == torch.float32
    np.testing.assert_allclose(y[0].numpy(), out, rtol=1e-5, atol=1e-4)
    resp = np.random.default_rng(1).poisson(0.2, (n, 20)).astype(np.float32)
    trial = dec.predict_trial(resp)
    w = am.windows_of_trial(resp, dec.lag_min, bins)
    with torch.no_grad():
        np.testing.assert_allclose(mod(torch.from_numpy(w[5:6]))[0].numpy(), trial[5], rtol=1e-5, atol=1e-3)


def test_onnx_export_of_the_amortized_model(tiny_model, tmp_path):
    """The export step (rtdecode.decode.export) finds the module and its graph matches torch."""
    import shutil

    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from rtdecode.decode import export

    folder = tmp_path / "m"
    shutil.copytree(tiny_model[0], folder)
    entry = export.export_onnx(folder)
    assert entry["inputs"][0]["shape"] == [1, 200, 16] and entry["outputs"][0]["shape"] == [1, 36, 64]
    assert entry["parity_max_rel_err"] < 1e-4
    assert json.loads((folder / "card.json").read_text())["onnx"]["sha256"] == entry["sha256"]
