"""ONNX export: static batch-1 graph, recorded in card.json, onnxruntime == torch, ridge == predict_window."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.decode.backends.helpers import BINS, H, N, W, make_ridge, windows
from rtdecode.decode import load
from rtdecode.decode.card import read_card
from rtdecode.decode.export import (OPSET, PARITY_RTOL, check_onnx, export_onnx, module_for, rel_err,
                                    sha256_file)
from rtdecode.errors import ModelError


@pytest.mark.parametrize("which", ["ridge", "mlp"])
def test_export_is_static_opset17_and_recorded_in_the_card(which, ridge_model, mlp_model):
    folder = ridge_model[0] if which == "ridge" else mlp_model
    card = json.loads((folder / "card.json").read_text())
    e = card["onnx"]
    assert e["file"] == "decoder.onnx" and e["opset"] == OPSET == 17
    assert e["sha256"] == sha256_file(folder / "decoder.onnx")
    assert e["inputs"] == [{"name": "window", "shape": [1, N, BINS], "dtype": "float32"}]
    assert e["outputs"] == [{"name": "frame", "shape": [1, H, W], "dtype": "float32"}]
    assert e["parity_max_rel_err"] < PARITY_RTOL
    m = onnx.load(str(folder / "decoder.onnx"))
    onnx.checker.check_model(m)
    assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 17
    inp = [i for i in m.graph.input if i.name not in {t.name for t in m.graph.initializer}]
    assert [d.dim_value for d in inp[0].type.tensor_type.shape.dim] == [1, N, BINS]  # no symbolic dims


@pytest.mark.parametrize("which", ["ridge", "mlp"])
def test_onnxruntime_matches_torch_on_fresh_inputs(which, ridge_model, mlp_model):
    folder = ridge_model[0] if which == "ridge" else mlp_model
    _, module = module_for(folder)
    sess = ort.InferenceSession(str(folder / "decoder.onnx"), providers=["CPUExecutionProvider"])
    for x in windows(5, seed=7):
        with torch.inference_mode():
            ref = module(torch.from_numpy(x[None])).numpy()
        got = sess.run(["frame"], {"window": x[None]})[0]
        assert got.shape == (1, H, W) and got.dtype == np.float32
        assert rel_err(got, ref) < PARITY_RTOL


def test_ridge_module_equals_predict_window(ridge_model):
    folder, dec = ridge_model
    _, loaded = load(folder)
    module = loaded.as_torch_module()
    out = np.zeros((H, W), np.float32)
    for x in windows(5, seed=11):
        loaded.predict_window(x, out)
        with torch.inference_mode():
            y = module(torch.from_numpy(x[None])).numpy()[0]
        assert rel_err(y, out) < 1e-5
    # and the decoder that was saved is the one that was loaded
    ref = np.zeros((H, W), np.float32)
    dec.predict_window(x, ref)
    np.testing.assert_array_equal(out, ref)


def test_export_keeps_an_up_to_date_graph_and_redoes_a_changed_one(tmp_path):
    make_ridge(tmp_path, n=20)
    sha = export_onnx(tmp_path)["sha256"]
    mtime = (tmp_path / "decoder.onnx").stat().st_mtime_ns
    assert export_onnx(tmp_path)["sha256"] == sha and (tmp_path / "decoder.onnx").stat().st_mtime_ns == mtime
    with open(tmp_path / "decoder.onnx", "ab") as f:
        f.write(b"\0")
    card = read_card(tmp_path)
    with pytest.raises(ModelError, match="sha256"):
        check_onnx(tmp_path, card)
    assert export_onnx(tmp_path)["sha256"] == sha  # re-exported: same graph, same bytes


def test_a_decoder_without_a_torch_module_is_refused():
    from rtdecode.decode.export import as_module

    with pytest.raises(ModelError, match="as_torch_module"):
        as_module(object())
