"""The backend registry: order, fallback with a reason, unknown names, card/ONNX mismatches."""

import json
import logging
import shutil
import sys
import importlib.util

import numpy as np
import pytest

from tests.decode.backends.helpers import BINS, H, N, W, make_ridge, windows
import rtdecode.decode.backends as bk
from rtdecode.decode.export import export_onnx, rel_err
from rtdecode.errors import ConfigError, ModelError


def test_importing_the_registry_loads_no_runtime():
    assert set(bk.DEFAULT_PREFERENCE) <= set(bk.BACKENDS)
    code = ("import sys, rtdecode.decode.backends; "
            "assert not {'tensorrt', 'onnxruntime'} & set(sys.modules), sorted(sys.modules)")
    import subprocess

    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("name", list(bk.BACKENDS))
def test_every_registered_backend_decodes_like_the_model_or_says_why_not(name, ridge_model):
    """The contract of a registry entry: its module imports without its runtime and has `load`; the
    backend it loads decodes a window as the model's own predict_window does, or it raises
    BackendUnavailable saying why (tensorrt without a GPU)."""
    import importlib

    assert callable(importlib.import_module(bk.BACKENDS[name]).load)
    folder, dec = ridge_model
    try:
        b = bk.load_backend(name, folder)
    except bk.BackendUnavailable as exc:
        assert str(exc), name
        return
    assert b.name == name and b.describe()["backend"] == name
    assert tuple(b.in_shape) == (N, BINS) and tuple(b.out_shape) == (H, W)
    b.warm_up(2)
    x = windows(1, seed=11)[0]
    out, ref = np.full((H, W), np.nan, np.float32), np.zeros((H, W), np.float32)
    b.run(x, out)
    dec.predict_window(x, ref)
    assert rel_err(out, ref) < 1e-4


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt is installed here")
def test_tensorrt_then_onnxruntime_picks_onnxruntime_and_says_why(ridge_model, caplog):
    folder, _ = ridge_model
    with caplog.at_level(logging.INFO, logger="rtdecode.decode.backends"):
        b = bk.choose(["tensorrt", "onnxruntime"], folder)
    assert b.name == "onnxruntime"
    lines = [r.getMessage() for r in caplog.records if r.name == "rtdecode.decode.backends"]
    assert len(lines) == 1
    assert "onnxruntime" in lines[0] and "skipped tensorrt" in lines[0] and "tensorrt not importable" in lines[0]


def test_first_backend_that_loads_wins_in_the_given_order(ridge_model, monkeypatch, caplog):
    folder, _ = ridge_model
    monkeypatch.setitem(bk.BACKENDS, "tensorrt", "rtdecode.no_such_backend_module")
    with caplog.at_level(logging.INFO, logger="rtdecode.decode.backends"):
        b = bk.choose(["tensorrt", "torch", "onnxruntime"], folder)
    assert b.name == "torch" and b.skipped and b.skipped[0].startswith("tensorrt (cannot import")
    assert "decoder backend: torch" in caplog.text
    assert bk.choose(["onnxruntime", "torch"], folder).name == "onnxruntime"


def test_every_backend_gives_the_same_frame(ridge_model, mlp_model):
    for folder in (ridge_model[0], mlp_model):
        outs = {}
        for name in ("onnxruntime", "torch"):
            b = bk.load_backend(name, folder)
            b.warm_up(2)
            assert b.name == name and b.describe()["backend"] == name
            out = np.full((H, W), np.nan, np.float32)
            b.run(windows(1, seed=5)[0], out)
            outs[name] = out
        assert rel_err(outs["onnxruntime"], outs["torch"]) < 1e-4


def test_onnxruntime_threads_and_non_contiguous_input(ridge_model):
    folder, dec = ridge_model
    b = bk.load_backend("onnxruntime", folder, threads=2)
    assert b.describe()["threads"] == 2
    x = np.asfortranarray(windows(1, seed=9)[0])
    out, ref = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    b.run(x, out)
    dec.predict_window(np.ascontiguousarray(x), ref)
    assert rel_err(out, ref) < 1e-4
    with pytest.raises(ConfigError):
        bk.load_backend("onnxruntime", folder, threads=0)


def test_unknown_backend_names_the_valid_ones(ridge_model):
    with pytest.raises(ConfigError, match="valid backends: " + ", ".join(bk.BACKENDS)) as e:
        bk.choose(["onnxruntime", "tensorrtt"], ridge_model[0])
    assert "tensorrtt" in str(e.value)
    with pytest.raises(ConfigError):
        bk.choose([], ridge_model[0])


@pytest.mark.parametrize("field,value,needle", [
    ("neurons", N + 1, f"input has {N} neurons, the card says {N + 1}"),
    ("window", {"lag_min": 0, "bins": BINS - 1}, f"input has {BINS} window bins, the card says {BINS - 1}"),
    ("frame_shape", [H, W + 1], "the card's frame is [1, 36, 65]"),
])
def test_card_that_disagrees_with_the_onnx_graph_is_rejected(ridge_model, tmp_path, field, value, needle):
    folder = tmp_path / "m"
    shutil.copytree(ridge_model[0], folder)
    card = json.loads((folder / "card.json").read_text())
    card[field] = value
    (folder / "card.json").write_text(json.dumps(card))
    for pref in (["onnxruntime"], ["torch"], ["tensorrt", "onnxruntime", "torch"]):
        with pytest.raises(ModelError, match="disagrees with") as e:
            bk.choose(pref, folder)
        assert needle in str(e.value)
    with pytest.raises(ModelError, match="disagrees with"):
        bk.load_backend("onnxruntime", folder)


def test_a_model_without_onnx_falls_back_to_torch(tmp_path, caplog):
    make_ridge(tmp_path, n=20)
    with caplog.at_level(logging.INFO, logger="rtdecode.decode.backends"):
        b = bk.choose(["onnxruntime", "torch"], tmp_path)
    assert b.name == "torch" and "no decoder.onnx" in caplog.text
    with pytest.raises(bk.BackendUnavailable, match="no decoder.onnx"):
        bk.choose(["onnxruntime"], tmp_path)
    export_onnx(tmp_path)
    assert bk.choose(["onnxruntime", "torch"], tmp_path).name == "onnxruntime"
