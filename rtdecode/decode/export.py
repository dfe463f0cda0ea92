"""Export a decoder to ONNX: the one graph that onnxruntime and TensorRT consume (docs/design.md 5).

The interface is a torch module: any decoder whose class has `as_torch_module()` returning a
`torch.nn.Module` that maps a float32 window (1, N, bins) to a float32 frame (1, H, W) -- or that is
such a module itself -- can be exported. `module_for(model_dir)` finds that module for a model
directory; `export_onnx(model_dir)` writes `decoder.onnx` next to card.json (static shapes, batch 1,
opset 17, input `window`, output `frame`), checks it through onnxruntime against torch on fresh
random inputs, and records it in the card under `onnx` (file, opset, sha256, input/output names and
shapes) so that a backend can check the graph it loads against the card without running code.

The ridge decoder's torch module lives beside it (rtdecode.decode.ridge_torch); the benchmark's
stand-in network in rtdecode.bench.standin.

torch, onnx and onnxruntime are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from rtdecode import decode
from rtdecode.decode.card import ModelCard, read_card, write_card
from rtdecode.errors import ModelError

log = logging.getLogger(__name__)

ONNX_FILE = "decoder.onnx"
OPSET = 17  # parsed by TensorRT 10 and 11
INPUT = "window"
OUTPUT = "frame"
PARITY_RTOL = 1e-4


class MissingOnnx(ModelError):
    """The model directory has no exported graph yet (export it; not a damaged model)."""


# --- shapes and files -------------------------------------------------------------------------

def io_shapes(card: ModelCard) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """((1, N, bins), (1, H, W)): the batch-1 input and output shapes a card promises."""
    return (1,) + card.in_shape, (1,) + card.frame_shape


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_io(path: str | Path) -> tuple[list[dict], list[dict]]:
    """(inputs, outputs) of an ONNX file: [{'name', 'shape' (None for a symbolic dim), 'dtype'}]."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        try:
            m = onnx.load(str(path), load_external_data=False)
        except Exception as exc:
            raise ModelError(f"{path}: not a readable ONNX file ({exc}); re-export with 'rtdecode compile'") from exc
        inits = {i.name for i in m.graph.initializer}

        def desc(v):
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "undefined"
            return {"name": v.name, "shape": shape, "dtype": dtype}

        return ([desc(v) for v in m.graph.input if v.name not in inits], [desc(v) for v in m.graph.output])
    import onnxruntime as ort  # no onnx package: ask onnxruntime

    try:
        s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path}: not a readable ONNX file ({exc}); re-export with 'rtdecode compile'") from exc
    typ = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}

    def d(v):
        return {"name": v.name, "shape": [x if isinstance(x, int) else None for x in v.shape],
                "dtype": typ.get(v.type, v.type)}

    return [d(v) for v in s.get_inputs()], [d(v) for v in s.get_outputs()]


def check_onnx(folder: str | Path, card: ModelCard, verify_sha: bool = True) -> Path:
    """The path of the model's ONNX graph after checking it against the card.

    MissingOnnx if the graph file is missing (export it);
    ModelError if the file changed since export (sha256) or its input/output names, shapes or
    dtypes disagree with the card (neurons, window bins, frame shape) -- the message names which.
    """
    folder = Path(folder)
    entry = card.onnx
    path = folder / (entry["file"] if entry else ONNX_FILE)
    if not path.is_file():
        raise MissingOnnx(f"{folder}: no {path.name} (export it with 'rtdecode compile {folder}')")
    if entry and verify_sha and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise ModelError(f"{path}: sha256 differs from the one recorded in card.json at export; the graph "
                         f"was changed or replaced. Re-export it with 'rtdecode compile {folder} --force-export'")
    inputs, outputs = onnx_io(path)
    (_, n, bins), (_, h, w) = io_shapes(card)
    problems = []
    if len(inputs) != 1 or len(outputs) != 1:
        problems.append(f"the graph has inputs {[i['name'] for i in inputs]} and outputs "
                        f"{[o['name'] for o in outputs]}; expected one input '{INPUT}' and one output '{OUTPUT}'")
    else:
        i, o = inputs[0], outputs[0]
        if i["name"] != INPUT:
            problems.append(f"input is named '{i['name']}', expected '{INPUT}'")
        if o["name"] != OUTPUT:
            problems.append(f"output is named '{o['name']}', expected '{OUTPUT}'")
        for what, v in (("input", i), ("output", o)):
            if v["dtype"] != "float32":
                problems.append(f"{what} dtype is {v['dtype']}, expected float32")
        ish, osh = i["shape"], o["shape"]
        if len(ish) != 3:
            problems.append(f"input shape {ish} is not (1, neurons, bins)")
        else:
            if ish[0] != 1:
                problems.append(f"input batch is {ish[0]}, expected 1 (static)")
            if ish[1] != n:
                problems.append(f"input has {ish[1]} neurons, the card says {n}")
            if ish[2] != bins:
                problems.append(f"input has {ish[2]} window bins, the card says {bins}")
        if len(osh) != 3:
            problems.append(f"output shape {osh} is not (1, H, W)")
        elif osh[0] != 1 or [osh[1], osh[2]] != [h, w]:
            problems.append(f"output shape is {osh}, the card's frame is {[1, h, w]}")
    if problems:
        raise ModelError(f"{path} disagrees with {folder / 'card.json'}: " + "; ".join(problems))
    return path


# --- torch modules ------------------------------------------------------------------------------

def as_module(decoder):
    """The torch module of a decoder object: `decoder.as_torch_module()`, or the decoder itself if
    it is a torch module. ModelError if it is neither."""
    if hasattr(decoder, "as_torch_module"):
        return decoder.as_torch_module()
    import torch

    if isinstance(decoder, torch.nn.Module):
        return decoder.eval()
    raise ModelError(f"{type(decoder).__name__} cannot be exported: it has no as_torch_module() and is not a "
                     "torch.nn.Module mapping (1, N, bins) to (1, H, W)")


def module_for(folder: str | Path):
    """(card, torch module) of a model directory."""
    card, decoder = decode.load(folder)
    return card, as_module(decoder)


def check_module(module, card: ModelCard) -> None:
    """Run the module once on zeros; ModelError if it does not give a float32 (1, H, W) frame."""
    import torch

    shape_in, shape_out = io_shapes(card)
    with torch.inference_mode():
        y = module(torch.zeros(shape_in, dtype=torch.float32))
    if tuple(y.shape) != shape_out or y.dtype != torch.float32:
        raise ModelError(f"the {card.method} module maps {list(shape_in)} to {y.dtype} {list(y.shape)}; the "
                         f"card's frame needs float32 {list(shape_out)}")


# --- export and parity -------------------------------------------------------------------------

def _torch_export(module, example, path: Path, opset: int) -> str:
    """Write the ONNX file; returns a description of the exporter used."""
    import torch

    kw = dict(input_names=[INPUT], output_names=[OUTPUT], opset_version=opset, do_constant_folding=True)
    try:
        # The TorchScript exporter: static shapes, opset 17 directly, no extra dependency. Deprecated
        # since torch 2.9 (the torch.export-based exporter needs onnxscript), still in torch 2.13.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), str(path), dynamo=False, **kw)
        return f"torch.onnx TorchScript exporter, torch {torch.__version__}"
    except TypeError:
        # A torch without the legacy exporter: the torch.export-based one (needs onnxscript).
        torch.onnx.export(module, (example,), str(path), dynamo=True, external_data=False, **kw)
        return f"torch.onnx dynamo exporter, torch {torch.__version__}"


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    """max |a - ref| / max |ref|."""
    return float(np.max(np.abs(a - ref)) / max(float(np.max(np.abs(ref))), 1e-12))


def parity(module, onnx_path: str | Path, card: ModelCard, trials: int = 3, seed: int | None = None) -> float:
    """Worst relative error (max abs difference / max abs torch output) of onnxruntime against torch
    over `trials` fresh random windows (non-negative, activity-like)."""
    import onnxruntime as ort
    import torch

    shape_in, _ = io_shapes(card)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(trials):
        x = rng.gamma(0.5, 2.0, shape_in).astype(np.float32)
        with torch.inference_mode():
            ref = module(torch.from_numpy(x)).numpy()
        got = sess.run([OUTPUT], {INPUT: x})[0]
        worst = max(worst, rel_err(got, ref))
    return worst


def export_onnx(folder: str | Path, module=None, opset: int = OPSET, force: bool = False,
                check: bool = True) -> dict:
    """Write `decoder.onnx` for the model directory and record it in card.json; returns the card's
    `onnx` entry. An existing graph that matches the card (sha256 and shapes) is kept unless
    `force`. `module` overrides the one found by `module_for`. With `check`, onnxruntime must match
    torch to PARITY_RTOL on fresh random inputs or ModelError is raised (and nothing is recorded)."""
    import torch

    folder = Path(folder)
    card = read_card(folder)
    if not force and card.onnx:
        try:
            check_onnx(folder, card)
            log.info("%s: %s is up to date (sha256 %s...)", folder, card.onnx["file"], card.onnx["sha256"][:12])
            return card.onnx
        except ModelError as exc:
            log.info("re-exporting: %s", exc)
    if module is None:
        card, module = module_for(folder)
    module = module.eval()
    check_module(module, card)
    shape_in, shape_out = io_shapes(card)
    path = folder / ONNX_FILE
    tmp = folder / (ONNX_FILE + ".tmp")
    exporter = _torch_export(module, torch.zeros(shape_in, dtype=torch.float32), tmp, opset)
    try:
        err = parity(module, tmp, card) if check else None
        if err is not None and not err < PARITY_RTOL:
            raise ModelError(f"{folder}: the exported graph differs from torch by {err:.2e} (relative), above "
                             f"{PARITY_RTOL:g}; not recorded")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    entry = {"file": ONNX_FILE, "opset": opset, "sha256": sha256_file(path),
             "inputs": [{"name": INPUT, "shape": list(shape_in), "dtype": "float32"}],
             "outputs": [{"name": OUTPUT, "shape": list(shape_out), "dtype": "float32"}],
             "exporter": exporter, "parity_max_rel_err": err}
    card = card.replace(onnx=entry)
    check_onnx(folder, card)
    write_card(folder, card)
    log.info("%s: wrote %s (opset %d, %.1f MB, parity %s)", folder, ONNX_FILE, opset, path.stat().st_size / 1e6,
             "not checked" if err is None else f"{err:.1e}")
    return entry
