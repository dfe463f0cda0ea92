"""The contract of every decoder method `rtdecode fit` knows (rtdecode.decode.methods): its entry fits
a tiny seeded dataset into a model directory that loads again (card version 2), fills the live window,
reconstructs with its default mode, and, when it decodes live, exports to ONNX and decodes a window
with onnxruntime == torch == predict_window.

A method whose defaults take long to fit gets its tiny options in TINY."""

import json
import shutil

import numpy as np
import pytest

from rtdecode import decode
from rtdecode.decode import methods
from rtdecode.decode.card import CARD_VERSION
from rtdecode.errors import ModelError

# seconds, not minutes: a fixed window for ridge (no search), few encoder steps, a short inverse
TINY = {
    "ridge": dict(bins=8, lag_min=0),
    "inverse": dict(encoder_steps=40, inverse_iterations=5),
}
# the session's tiny_model fixture (tests/decode/conftest.py) is already this method's tiny fit
FIXTURE = {"amortized": "tiny_model"}


@pytest.fixture(scope="module")
def fitted(request, tiny_dataset, tmp_path_factory):
    """method name -> (model folder, card), fitted once per module."""
    from rtdecode.decode.inverse import InverseConfig
    from rtdecode.offline.fit import fit_dataset

    cache = {}

    def fit(name):
        if name not in cache:
            if name in FIXTURE:
                cache[name] = request.getfixturevalue(FIXTURE[name])
            else:
                opts = dict(TINY.get(name, {}))
                if "inverse_iterations" in opts:
                    opts["inverse_cfg"] = InverseConfig(iterations=opts.pop("inverse_iterations"))
                out = tmp_path_factory.mktemp(f"contract_{name}") / "model"
                cache[name] = (out, fit_dataset(tiny_dataset, out, method=name, progress=False, **opts))
        return cache[name]

    return fit


def _window(dataset, card) -> np.ndarray:
    """(N, bins) float32: the first bins of the dataset's first train trial."""
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(dataset)
    responses = ds.load(ds.require("train")[0]).responses[: card.neurons]
    return np.ascontiguousarray(responses[:, : card.window.bins], np.float32)


@pytest.mark.parametrize("name", methods.fit_methods())
def test_the_entry_is_complete(name):
    m = methods.METHODS[name]
    assert m.modes and set(m.iterative) <= set(m.modes)
    for path in (m.decoder, m.fit) + ((m.window_fill,) if m.window_fill else ()):
        assert callable(methods.resolve(path)), path


@pytest.mark.parametrize("name", methods.fit_methods())
def test_fits_reloads_and_reconstructs(name, fitted, tiny_dataset, tmp_path):
    from rtdecode.decode import model as model_dir
    from rtdecode.offline.reconstruct import reconstruct

    out, card = fitted(name)
    loaded, arrays = model_dir.load(out)
    assert loaded.to_dict() == json.loads(json.dumps(card.to_dict()))  # what fit returned is what was written
    assert loaded.method == name and loaded.card_version == CARD_VERSION
    assert list(loaded.to_dict()["method_settings"]) == [name]
    fill = methods.window_fill(arrays, loaded)
    assert fill.shape == (card.neurons,) and fill.dtype == np.float32 and np.isfinite(fill).all()
    mode = methods.METHODS[name].modes[0]
    m = reconstruct(out, tiny_dataset, tmp_path / "rec", method=mode, progress=False, iterations=1)
    assert m["method"] == mode and m["model_method"] == name and np.isfinite(m["pixel_corr"])


@pytest.mark.parametrize("name", methods.fit_methods())
def test_exports_and_decodes_a_window_with_onnx_parity(name, fitted, tiny_dataset, tmp_path):
    import onnxruntime as ort
    import torch

    from rtdecode.decode.export import PARITY_RTOL, export_onnx, rel_err

    folder = tmp_path / "m"
    shutil.copytree(fitted(name)[0], folder)
    if not methods.METHODS[name].live:  # no network that decodes a window: refused, loudly
        with pytest.raises(ModelError):
            export_onnx(folder)
        return
    entry = export_onnx(folder)
    assert entry["parity_max_rel_err"] < PARITY_RTOL
    card, dec = decode.load(folder)  # reloaded, with its graph recorded in the card
    assert card.onnx["file"] == "decoder.onnx"
    x = _window(tiny_dataset, card)
    ref = np.zeros(card.frame_shape, np.float32)
    dec.predict_window(x, ref)
    with torch.inference_mode():
        via_torch = dec.as_torch_module()(torch.from_numpy(x[None])).numpy()[0]
    sess = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    via_onnx = sess.run(["frame"], {"window": x[None]})[0][0]
    assert np.isfinite(ref).all()
    assert rel_err(via_torch, ref) < PARITY_RTOL and rel_err(via_onnx, via_torch) < PARITY_RTOL
