"""Decoder inference behind one interface: TensorRT on GPUs, ONNX Runtime and torch elsewhere,
and `numpy`, the model's own in-process `predict_window` (no exported graph needed).

A backend module (one file each here) has `load(model_dir, card, **options) -> Backend`. A Backend
has `name`, `warm_up()`, `run(window (N, bins) float32, out (H, W) float32)` writing into the
preallocated `out` without allocating per call where the runtime allows it, and `describe()` (a
JSON-able dict: runtime, version, device, threads...). `load` raises BackendUnavailable when the
backend cannot run here (not installed, no GPU, no exported graph) and ModelError when the model
itself is wrong (its ONNX graph disagrees with its card).

`choose(preference, model_dir, card)` loads the first backend of `preference` that loads and logs
one line saying which runs and why each earlier one was skipped. `BackendStage` puts a backend in
the live chain, like `rtdecode.decode.DecodeStage`.

`BACKENDS` is the registry: the rig file's `decoder.backends`, `rtdecode compile --backend` and
their error messages take their names from it. Heavy runtimes (tensorrt, onnxruntime, torch) are
imported only inside each backend module's functions; importing this package imports none of them.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np

from rtdecode.decode.card import ModelCard, read_card
from rtdecode.decode.export import MissingOnnx, check_onnx
from rtdecode.errors import ConfigError, ModelError, RtdecodeError
from rtdecode.stage import Spec, Stage

log = logging.getLogger(__name__)

# name -> module path; each module has load(model_dir, card, **options).
BACKENDS = {
    "tensorrt": "rtdecode.decode.backends.tensorrt",
    "onnxruntime": "rtdecode.decode.backends.onnxruntime",
    "torch": "rtdecode.decode.backends.torch",
    "numpy": "rtdecode.decode.backends.numpy",
}
# the compiled ones, fastest first; add "numpy" to a rig file's list to run without an exported graph
DEFAULT_PREFERENCE = ("tensorrt", "onnxruntime", "torch")


class BackendUnavailable(RtdecodeError):
    """This backend cannot run on this machine (runtime not installed, no GPU, no exported graph)."""


class Backend:
    """What every backend gives. Subclasses set `name`, `card`, `in_shape` (N, bins) and
    `out_shape` (H, W), and implement `run` and `describe`."""

    name: str = "backend"
    card: ModelCard
    in_shape: tuple[int, int]
    out_shape: tuple[int, int]

    def run(self, window: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def warm_up(self, n: int = 20) -> None:
        """Run `n` times on zeros so that lazy initialisation and autotuning happen now."""
        x = np.zeros(self.in_shape, np.float32)
        y = np.zeros(self.out_shape, np.float32)
        for _ in range(n):
            self.run(x, y)

    def describe(self) -> dict:
        return {"backend": self.name}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"


def shapes(card: ModelCard) -> tuple[tuple[int, int], tuple[int, int]]:
    """((N, bins), (H, W)) of a card: what `run` takes and gives."""
    return card.in_shape, card.frame_shape


def check_names(names) -> list[str]:
    """The names, checked against the registry; ConfigError lists the valid ones."""
    names = list(names)
    if not names:
        raise ConfigError(f"no backend given; valid backends: {', '.join(BACKENDS)}")
    bad = [n for n in names if n not in BACKENDS]
    if bad:
        raise ConfigError(f"unknown backend{'s' if len(bad) > 1 else ''} {', '.join(repr(b) for b in bad)}; "
                          f"valid backends: {', '.join(BACKENDS)}")
    return names


def load_backend(name: str, model_dir: str | Path, card: ModelCard | None = None, **options) -> Backend:
    """Load one backend by name. Raises BackendUnavailable (with the reason) or ModelError."""
    check_names([name])
    if card is None:
        card = read_card(model_dir)
    try:
        mod = importlib.import_module(BACKENDS[name])
    except ImportError as exc:  # a backend module whose runtime import fails at module level
        raise BackendUnavailable(f"cannot import {BACKENDS[name]} ({exc})") from exc
    return mod.load(Path(model_dir), card, **options)


def validate(model_dir: str | Path, card: ModelCard) -> None:
    """ModelError if the model's exported ONNX graph exists but disagrees with its card."""
    try:
        check_onnx(model_dir, card)
    except MissingOnnx:
        pass


def onnx_graph(model_dir: str | Path, card: ModelCard) -> Path:
    """The model's checked ONNX graph; BackendUnavailable when it has not been exported yet (so the
    registry moves on to a backend that needs none), ModelError when it disagrees with the card."""
    try:
        return check_onnx(model_dir, card)
    except MissingOnnx as exc:
        raise BackendUnavailable(str(exc)) from exc


def choose(preference, model_dir: str | Path, card: ModelCard | None = None,
           options: dict[str, dict] | None = None) -> Backend:
    """The first backend of `preference` that loads here (not warmed up yet).

    `options` maps a backend name to keyword options for its `load` (e.g. {"onnxruntime":
    {"threads": 2}}). Unknown names raise ConfigError before anything is loaded; a model whose
    ONNX graph disagrees with its card raises ModelError whatever the backend; when none loads,
    BackendUnavailable lists every reason.
    """
    names = check_names(preference)
    options = options or {}
    if card is None:
        card = read_card(model_dir)
    validate(model_dir, card)
    skipped = []
    for name in names:
        try:
            backend = load_backend(name, model_dir, card, **options.get(name, {}))
        except BackendUnavailable as exc:
            skipped.append(f"{name} ({exc})")
            continue
        desc = backend.describe()
        detail = ", ".join(f"{k} {v}" for k, v in desc.items() if k in ("device", "provider", "threads", "mode"))
        log.info("decoder backend: %s (%s)%s", name, detail,
                 f"; skipped {'; '.join(skipped)}" if skipped else "")
        backend.skipped = skipped
        return backend
    raise BackendUnavailable(f"no backend of {names} can run here: " + "; ".join(skipped))


class BackendStage(Stage):
    """(N, bins) float32 window -> (H, W) float32 frame through a compiled backend."""

    name = "decode"

    def __init__(self, card: ModelCard, backend: Backend):
        self.card = card
        self.backend = backend
        (n, bins), (h, w) = shapes(card)
        if tuple(backend.in_shape) != (n, bins) or tuple(backend.out_shape) != (h, w):
            raise ModelError(f"backend {backend.name} takes {backend.in_shape} and gives {backend.out_shape}; the "
                             f"card says {(n, bins)} and {(h, w)}")
        self.in_spec = Spec(np.float32, (n, bins))
        self.out_spec = Spec(np.float32, (h, w))

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        self.backend.run(inp, out)

    def warm_up(self) -> None:
        self.backend.warm_up()
