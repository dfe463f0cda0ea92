"""Small model directories for the backend tests: a ridge decoder with random weights and the
stand-in amortized network, each exported to ONNX once per session."""

import pytest

from tests.decode.backends.helpers import BINS, H, N, W, make_ridge
from rtdecode.bench.standin import write_standin_model
from rtdecode.decode.export import export_onnx


@pytest.fixture(scope="session")
def ridge_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ridge_model")
    dec = make_ridge(folder)
    export_onnx(folder)
    return folder, dec


@pytest.fixture(scope="session")
def mlp_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mlp_model")
    write_standin_model(folder, N, BINS, (H, W), hidden=64, seed=1)
    export_onnx(folder)
    return folder
