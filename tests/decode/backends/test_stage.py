"""BackendStage in a Chain, next to the DecodeStage it replaces; `rtdecode compile` and the
decode benchmark's plumbing (tiny settings, no timing assertions)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from tests.decode.backends.helpers import BINS, H, N, W, windows
from rtdecode.decode.backends import BackendStage, load_backend
from rtdecode.decode import DecodeStage, load
from rtdecode.decode.export import rel_err
from rtdecode.errors import StageError
from rtdecode.stage import Chain, Spec, Stage


class Scale(Stage):
    name = "scale"

    def __init__(self):
        self.in_spec = self.out_spec = Spec(np.float32, (N, BINS))

    def process(self, inp, out):
        np.multiply(inp, 2, out=out)


@pytest.mark.parametrize("name", ["onnxruntime", "torch"])
def test_backend_stage_in_a_chain_matches_decode_stage(ridge_model, name):
    folder, _ = ridge_model
    card, dec = load(folder)
    fast = Chain([Scale(), BackendStage(card, load_backend(name, folder, card))])
    ref = Chain([Scale(), DecodeStage(card, dec)])
    fast.warm_up()
    ref.warm_up()
    assert fast.out_spec == Spec(np.float32, (H, W))
    for x in windows(3, seed=3):
        a = fast.process(x).copy()
        b = ref.process(x)
        assert rel_err(a, b) < 1e-4
    with pytest.raises(StageError):
        fast.process(np.zeros((N + 1, BINS), np.float32))


def test_compile_command_exports_and_reports(tmp_path, capsys):
    from tests.decode.backends.helpers import make_ridge
    from rtdecode.decode.backends.compile import cmd_compile

    make_ridge(tmp_path, n=20)
    args = SimpleNamespace(model=str(tmp_path), backend=["tensorrt", "onnxruntime"], threads=1,
                           force_export=False, fp16=False, rebuild=False)
    assert cmd_compile(args, False) == 0
    text = capsys.readouterr().out
    assert "runs: onnxruntime" in text and "decoder.onnx" in text
    assert json.loads((tmp_path / "card.json").read_text())["onnx"]["opset"] == 17


def test_bench_decode_writes_every_column(tmp_path):
    from rtdecode.bench.decode import run

    out = tmp_path / "b.json"
    d = run(out, neurons=(30,), runs=20, rounds=2, budget_s=0.2, anchor=False)
    assert json.loads(out.read_text())["config"]["neurons"] == [30]
    models = {r["model"]: r for r in d["results"]}
    assert set(models) == {"ridge", "standin_mlp"}
    for r in models.values():
        for col in ("torch_eager", "onnxruntime"):
            v = r["backends"][col]
            assert 0 < v["p50_ms"] <= v["p99_ms"] and v["rel_err_vs_baseline"] < 1e-4
        assert r["backends"]["torch_eager"]["speedup_p50_vs_torch_eager"] == 1.0
    assert models["ridge"]["backends"]["numpy_predict_window"]["rel_err_vs_baseline"] < 1e-4
    assert "machine" in d and d["machine"]["threads_per_backend"] == 1
