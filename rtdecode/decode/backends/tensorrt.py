"""TensorRT backend: the exported ONNX graph built into an engine for this GPU.

Written against the documented TensorRT 10 / 11 Python API; TensorRT cannot be installed on the
development machines (its wheels fetch libraries from NVIDIA's index), so this module has not been
run there and its tests skip when `tensorrt` is not importable. What it consumes -- the ONNX graph
-- is checked on CPU against torch through onnxruntime (rtdecode.decode.export).

Build: `trt.Builder` -> network (strongly typed in TensorRT 11, where `BuilderFlag.FP16` no longer
exists: precision then follows the graph's types; in TensorRT 10 `BuilderFlag.FP16` is set when
`fp16=True`) -> `trt.OnnxParser.parse` -> `build_serialized_network`. The serialized engine is cached
under MODEL/engines/, keyed by GPU name + compute capability + TensorRT version + the ONNX sha256
+ precision; an engine that is missing, corrupt or refused by this TensorRT/GPU is rebuilt with a
log line saying why.

Run: `trt.Runtime.deserialize_cuda_engine` -> `create_execution_context`; device buffers (torch CUDA
tensors) and pinned host buffers are allocated once and bound by tensor name (`set_tensor_address`);
each `run` copies the window in, calls `execute_async_v3` on a CUDA stream, copies the frame out and
synchronises the stream.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from rtdecode.decode.card import ModelCard
from rtdecode.decode.export import INPUT, OUTPUT
from rtdecode.decode.backends import Backend, BackendUnavailable, onnx_graph, shapes
from rtdecode.errors import ModelError

log = logging.getLogger(__name__)

ENGINE_DIR = "engines"
WORKSPACE_BYTES = 1 << 30


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-")


def engine_key(gpu: str, capability: tuple[int, int], trt_version: str, onnx_sha256: str, precision: str) -> str:
    """File name of the cached engine: everything that makes an engine unusable elsewhere."""
    return (f"{_slug(gpu)}_sm{capability[0]}{capability[1]}_trt{_slug(trt_version)}_"
            f"{onnx_sha256[:16]}_{precision}.engine")


def _build(trt, logger, onnx_path: Path, fp16: bool) -> tuple[bytes, str]:
    """(serialized engine, precision actually used)."""
    builder = trt.Builder(logger)
    has_fp16_flag = hasattr(trt.BuilderFlag, "FP16")  # TensorRT 10 yes, 11 no
    flags = 0
    if not has_fp16_flag and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    precision = "fp32"
    if fp16:
        if has_fp16_flag:
            config.set_flag(trt.BuilderFlag.FP16)
            precision = "fp16"
        else:
            log.warning("TensorRT %s builds strongly typed networks (no BuilderFlag.FP16): the engine follows "
                        "the graph's float32 types; export a float16 graph for FP16", trt.__version__)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path.name} "
                                 "(see the TensorRT log above)")
    return bytes(blob), precision


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, model_dir: Path, card: ModelCard, fp16: bool = False, rebuild: bool = False):
        try:
            import tensorrt as trt
        except ImportError as exc:
            raise BackendUnavailable(f"tensorrt not importable ({exc})") from exc
        try:
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"the TensorRT backend allocates GPU memory with torch, which is missing ({exc})") from exc
        if not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device visible to torch")
        onnx_path = onnx_graph(model_dir, card)
        self.card = card
        self.in_shape, self.out_shape = shapes(card)
        self.version = trt.__version__
        self.gpu = torch.cuda.get_device_name(0)
        cap = torch.cuda.get_device_capability(0)
        sha = card.onnx["sha256"]
        want = "fp16" if fp16 and hasattr(trt.BuilderFlag, "FP16") else "fp32"
        self.engine_path = Path(model_dir) / ENGINE_DIR / engine_key(self.gpu, cap, self.version, sha, want)
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)

        engine, why = None, None
        if rebuild:
            why = "rebuild requested"
        elif not self.engine_path.is_file():
            why = f"no cached engine {self.engine_path.name}"
        else:
            engine, why = self._deserialize(self.engine_path.read_bytes(), INPUT, OUTPUT)
        if engine is None:
            (log.warning if self.engine_path.is_file() else log.info)(
                "TensorRT: building the engine for %s (%s); this takes a while", self.gpu, why)
            blob, self.precision = _build(trt, self._logger, onnx_path, fp16)
            engine, err = self._deserialize(blob, INPUT, OUTPUT)
            if engine is None:
                raise BackendUnavailable(f"TensorRT built an engine it cannot load ({err})")
            self.engine_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.engine_path.with_suffix(".tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, self.engine_path)
            meta = {"gpu": self.gpu, "compute_capability": list(cap), "tensorrt": self.version, "onnx_sha256": sha,
                    "precision": self.precision}
            self.engine_path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
            log.info("TensorRT: engine cached at %s", self.engine_path)
        else:
            self.precision = want
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendUnavailable("TensorRT could not create an execution context (out of GPU memory?)")

        dev = torch.device("cuda")
        self.d_in = torch.zeros((1,) + self.in_shape, dtype=torch.float32, device=dev)
        self.d_out = torch.zeros((1,) + self.out_shape, dtype=torch.float32, device=dev)
        self.h_in = torch.zeros((1,) + self.in_shape, dtype=torch.float32).pin_memory()
        self.h_out = torch.zeros((1,) + self.out_shape, dtype=torch.float32).pin_memory()
        self.h_in_np, self.h_out_np = self.h_in.numpy(), self.h_out.numpy()
        self.context.set_tensor_address(INPUT, self.d_in.data_ptr())
        self.context.set_tensor_address(OUTPUT, self.d_out.data_ptr())
        self.stream = torch.cuda.Stream()
        self._torch = torch

    def _deserialize(self, blob: bytes, inp: str, outp: str):
        """(engine, None) or (None, why it cannot be used)."""
        trt = __import__("tensorrt")
        try:
            engine = self._runtime.deserialize_cuda_engine(blob)
        except Exception as exc:  # some versions raise instead of returning None
            return None, f"cached engine unreadable ({exc})"
        if engine is None:
            return None, "cached engine is corrupt or was built by another TensorRT version or GPU"
        names = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i))
                 for i in range(engine.num_io_tensors)}
        if names.get(inp) != trt.TensorIOMode.INPUT or names.get(outp) != trt.TensorIOMode.OUTPUT:
            return None, f"cached engine has tensors {sorted(names)}, expected input '{inp}' and output '{outp}'"
        for name, shape in ((inp, (1,) + self.in_shape), (outp, (1,) + self.out_shape)):
            got = tuple(engine.get_tensor_shape(name))
            if got != shape:
                return None, f"cached engine's '{name}' has shape {got}, the card says {shape}"
            if engine.get_tensor_dtype(name) != trt.DataType.FLOAT:
                return None, f"cached engine's '{name}' is {engine.get_tensor_dtype(name)}, expected float32"
        return engine, None

    def run(self, window: np.ndarray, out: np.ndarray) -> None:
        torch = self._torch
        np.copyto(self.h_in_np[0], window)
        with torch.cuda.stream(self.stream):
            self.d_in.copy_(self.h_in, non_blocking=True)
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log)")
            self.h_out.copy_(self.d_out, non_blocking=True)
        self.stream.synchronize()
        np.copyto(out, self.h_out_np[0])

    def describe(self) -> dict:
        return {"backend": self.name, "runtime": f"tensorrt {self.version}", "device": "cuda", "gpu": self.gpu,
                "precision": self.precision, "engine": str(self.engine_path)}


def load(model_dir, card: ModelCard, **options) -> TensorRTBackend:
    return TensorRTBackend(Path(model_dir), card, **options)
