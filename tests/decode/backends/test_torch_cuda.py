"""torch backend on CUDA with a CUDA graph: needs a GPU (marked gpu, skipped without CUDA)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from tests.decode.backends.helpers import H, W, windows  # noqa: E402
from rtdecode.decode.backends import load_backend  # noqa: E402
from rtdecode.decode.export import rel_err  # noqa: E402

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


@pytest.mark.parametrize("graph", [True, False])
def test_cuda_graph_replay_matches_the_cpu(ridge_model, mlp_model, graph):
    for folder in (ridge_model[0], mlp_model):
        gpu = load_backend("torch", folder, device="cuda", cuda_graph=graph)
        cpu = load_backend("torch", folder, device="cpu")
        assert gpu.describe()["mode"] == ("cuda_graph" if graph else "eager")
        gpu.warm_up(3)
        for x in windows(3, seed=4):  # new data each replay: the static input is refreshed
            a, b = np.zeros((H, W), np.float32), np.zeros((H, W), np.float32)
            gpu.run(x, a)
            cpu.run(x, b)
            assert rel_err(a, b) < 1e-3  # TF32 may be used for float32 matmuls on the GPU
