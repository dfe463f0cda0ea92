"""TensorRT backend: runs only where `tensorrt` is importable and a GPU is present."""

import numpy as np
import pytest

trt = pytest.importorskip("tensorrt")
torch = pytest.importorskip("torch")

from tests.decode.backends.helpers import H, W, windows  # noqa: E402
from rtdecode.decode.backends import load_backend  # noqa: E402
from rtdecode.decode.export import rel_err  # noqa: E402

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU")


def test_tensorrt_matches_onnxruntime_and_caches_its_engine(ridge_model, caplog):
    folder, dec = ridge_model
    b = load_backend("tensorrt", folder)
    b.warm_up(3)
    out, ref = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
    x = windows(1, seed=2)[0]
    b.run(x, out)
    dec.predict_window(x, ref)
    assert rel_err(out, ref) < 1e-3  # TF32 may be used for float32 matmuls
    engine = b.engine_path
    assert engine.is_file()
    again = load_backend("tensorrt", folder)
    assert again.engine_path == engine


def test_a_corrupt_engine_is_rebuilt_with_a_log_line(ridge_model, caplog):
    import logging

    folder, _ = ridge_model
    b = load_backend("tensorrt", folder)
    b.engine_path.write_bytes(b"not an engine")
    with caplog.at_level(logging.INFO, logger="rtdecode.decode.backends.tensorrt"):
        b2 = load_backend("tensorrt", folder)
    assert "building the engine" in caplog.text and "corrupt" in caplog.text
    out = np.zeros((H, W), np.float32)
    b2.run(windows(1)[0], out)
    assert np.isfinite(out).all()
