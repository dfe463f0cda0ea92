"""ONNX Runtime backend: the exported graph on the CPU (or CUDA when onnxruntime-gpu has it).

Batch 1, one intra-op thread by default (the live path shares a few cores with acquisition and
extraction; more threads rarely pay at this size). Input and output are bound once through
IOBinding to the caller's buffers, so `run` allocates nothing; a buffer at a new address is bound
again.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtdecode.decode.card import ModelCard
from rtdecode.decode.export import INPUT, OUTPUT
from rtdecode.decode.backends import Backend, BackendUnavailable, onnx_graph, shapes
from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, model_dir: Path, card: ModelCard, threads: int = 1, device: str = "auto",
                 spin: bool = False):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime not installed ({exc}); pip install onnxruntime") from exc
        if int(threads) < 1:
            raise ConfigError(f"onnxruntime threads must be >= 1, got {threads}")
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"onnxruntime device must be auto, cpu or cuda, got {device!r}")
        path = onnx_graph(model_dir, card)
        self.card = card
        self.in_shape, self.out_shape = shapes(card)
        self.threads = int(threads)
        available = ort.get_available_providers()
        want_cuda = device in ("auto", "cuda") and "CUDAExecutionProvider" in available
        if device == "cuda" and not want_cuda:
            raise BackendUnavailable(f"onnxruntime has no CUDAExecutionProvider here (available: {available})")
        providers = (["CUDAExecutionProvider"] if want_cuda else []) + ["CPUExecutionProvider"]
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Busy-waiting worker threads would steal cores from acquisition when threads > 1.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(path), so, providers=providers)
        except Exception as exc:
            raise BackendUnavailable(f"onnxruntime cannot load {path.name} ({exc})") from exc
        self.provider = self.session.get_providers()[0]
        self.version = ort.__version__
        self._input, self._output = INPUT, OUTPUT
        self._io = self.session.io_binding()
        self._staging = np.zeros((1,) + self.in_shape, np.float32)
        self._in_ptr = self._out_ptr = None

    def _bind_input(self, arr: np.ndarray) -> None:
        self._io.bind_input(self._input, "cpu", 0, np.float32, (1,) + self.in_shape, arr.ctypes.data)
        self._in_ptr = arr.ctypes.data

    def _bind_output(self, arr: np.ndarray) -> None:
        self._io.bind_output(self._output, "cpu", 0, np.float32, (1,) + self.out_shape, arr.ctypes.data)
        self._out_ptr = arr.ctypes.data

    def run(self, window: np.ndarray, out: np.ndarray) -> None:
        if window.dtype == np.float32 and window.flags.c_contiguous and window.shape == self.in_shape:
            src = window
        else:
            np.copyto(self._staging[0], window)  # raises on a shape that does not broadcast
            src = self._staging
        if src.ctypes.data != self._in_ptr:
            self._bind_input(src)
        if out.dtype != np.float32 or not out.flags.c_contiguous or out.shape != self.out_shape:
            raise ValueError(f"out must be C-contiguous float32 {self.out_shape}, got {out.dtype} {out.shape}")
        if out.ctypes.data != self._out_ptr:
            self._bind_output(out)
        self.session.run_with_iobinding(self._io)

    def describe(self) -> dict:
        return {"backend": self.name, "runtime": f"onnxruntime {self.version}", "provider": self.provider,
                "device": "cuda" if self.provider == "CUDAExecutionProvider" else "cpu",
                "threads": self.threads}


def load(model_dir, card: ModelCard, **options) -> OrtBackend:
    return OrtBackend(Path(model_dir), card, **options)
