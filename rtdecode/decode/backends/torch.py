"""torch backend: the decoder's own torch module, eager on the CPU, a CUDA graph on a GPU.

CPU: eager mode under `torch.inference_mode()`; the input is a zero-copy view of the caller's
window and the result is copied into the caller's `out`. `threads` sets torch's intra-op threads
for the whole process (torch.set_num_threads is global), default 1.

CUDA (when torch sees a GPU): the module is captured once into a `torch.cuda.CUDAGraph` with static
input and output tensors (the documented whole-network capture: warm up on a side stream, capture
under `torch.cuda.graph`, then `replay()`); each `run` copies the window into the static input
through pinned host memory, replays the graph and copies the static output back. This path was
written against the torch.cuda.CUDAGraph documentation and could not be run on the development
machines (no GPU); its tests are marked `gpu`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from rtdecode.decode.card import ModelCard
from rtdecode.decode.export import check_module, module_for
from rtdecode.decode.backends import Backend, BackendUnavailable, shapes
from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model_dir: Path, card: ModelCard, device: str = "auto", threads: int | None = 1,
                 cuda_graph: bool = True, module=None):
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"torch not installed ({exc})") from exc
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"torch device must be auto, cpu or cuda, got {device!r}")
        if device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("torch sees no CUDA device")
        self.device = "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
        self.card = card
        self.in_shape, self.out_shape = shapes(card)
        self.version = torch.__version__
        if module is None:
            _, module = module_for(model_dir)
        check_module(module, card)
        self.module = module.eval()
        self.threads = None
        if self.device == "cpu":
            if threads is not None:
                if int(threads) < 1:
                    raise ConfigError(f"torch threads must be >= 1, got {threads}")
                torch.set_num_threads(int(threads))
            self.threads = torch.get_num_threads()
            self.mode = "eager"
            self.graph = None
        else:
            self._setup_cuda(torch, cuda_graph)

    def _setup_cuda(self, torch, cuda_graph: bool) -> None:
        dev = torch.device("cuda")
        self.gpu = torch.cuda.get_device_name(dev)
        self.module = self.module.to(dev)
        self.static_in = torch.zeros((1,) + self.in_shape, dtype=torch.float32, device=dev)
        self.host_in = torch.zeros((1,) + self.in_shape, dtype=torch.float32).pin_memory()
        self.host_out = torch.zeros((1,) + self.out_shape, dtype=torch.float32).pin_memory()
        self.host_in_np = self.host_in.numpy()
        self.host_out_np = self.host_out.numpy()
        self.stream = torch.cuda.Stream()
        # Warm up on a side stream before capture (as the CUDA graphs documentation requires).
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream), torch.inference_mode():
            for _ in range(3):
                self.static_out = self.module(self.static_in)
        torch.cuda.current_stream().wait_stream(self.stream)
        torch.cuda.synchronize()
        self.graph = None
        self.mode = "eager"
        if cuda_graph:
            g = torch.cuda.CUDAGraph()
            with torch.inference_mode(), torch.cuda.graph(g, stream=self.stream):
                self.static_out = self.module(self.static_in)
            self.graph = g
            self.mode = "cuda_graph"
        torch.cuda.synchronize()

    def run(self, window: np.ndarray, out: np.ndarray) -> None:
        import torch

        if self.device == "cpu":
            x = torch.from_numpy(np.ascontiguousarray(window, np.float32)).reshape((1,) + self.in_shape)
            with torch.inference_mode():
                y = self.module(x)
            np.copyto(out, y.numpy()[0])
            return
        np.copyto(self.host_in_np[0], window)
        with torch.cuda.stream(self.stream):
            self.static_in.copy_(self.host_in, non_blocking=True)
            if self.graph is not None:
                self.graph.replay()
            else:
                with torch.inference_mode():
                    self.static_out = self.module(self.static_in)
            self.host_out.copy_(self.static_out, non_blocking=True)
        self.stream.synchronize()
        np.copyto(out, self.host_out_np[0])

    def describe(self) -> dict:
        d = {"backend": self.name, "runtime": f"torch {self.version}", "device": self.device, "mode": self.mode}
        if self.device == "cpu":
            d["threads"] = self.threads
        else:
            d["gpu"] = self.gpu
        return d


def load(model_dir, card: ModelCard, **options) -> TorchBackend:
    return TorchBackend(Path(model_dir), card, **options)
