"""The model card: what a model directory's `card.json` says, as a typed, versioned object.

card.json (read with `json`, never pickle) holds what a user or a backend needs to know without
running code: the method, the number of neurons, the activity window, the frame size, the
normalisation, the versions, how the model was trained, and the exported ONNX graph. This module
is the only place that reads or writes it; everything else uses `ModelCard` attributes.

Version 2 (written now) keeps each method's own settings in one block, `method_settings: {METHOD:
{...}}` (ridge: empty; inverse: encoder, inverse, warm_iterations; amortized: those and amortized; the
benchmark stand-in: architecture), so that a new method needs no new card field. Version 1 cards (the
settings as top-level fields) still load, and are written back in version 1's layout, byte for byte.
Unknown or missing fields are a ModelError naming the field (a card from a newer rtdecode says so).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import rtdecode
from rtdecode.errors import ModelError

FORMAT = "rtdecode-model"
CARD_VERSION = 2
CARD_FILE = "card.json"

DEFAULT_NORMALISATION = {
    "activity": "log1p(max(x, 0) / act_scale) when weights.npz has act_scale (else x), then z-score per "
                "neuron with act_mean, act_std (weights.npz)",
    "pixels": "0-255 (the stimulus scale); pixel_mean added back",
}


@dataclass(frozen=True)
class Window:
    """Frame f is decoded from activity bins [f + lag_min, f + lag_min + bins)."""

    lag_min: int
    bins: int


# version 1's top-level settings fields, in its order; version 2 keeps them in method_settings
V1_SETTINGS = ("architecture", "encoder", "inverse", "warm_iterations", "amortized")
BASE_FIELDS = ("format", "card_version", "rtdecode_version", "created", "method", "neurons", "window",
               "frame_shape", "fps", "normalisation")
OPTIONAL_FIELDS = ("training", "onnx", "distributed")


@dataclass(frozen=True)
class ModelCard:
    format: str
    card_version: int
    rtdecode_version: str
    created: str  # ISO 8601, UTC
    method: str  # a name in rtdecode.decode.methods (or a benchmark stand-in's)
    neurons: int
    window: Window
    frame_shape: tuple[int, int]  # (H, W) pixels
    fps: float
    normalisation: dict
    settings: dict = dataclasses.field(default_factory=dict)  # the method's own block (method_settings)
    training: dict | None = None  # how it was fitted (dataset, trials, diagnostics)
    onnx: dict | None = None  # the exported graph (rtdecode.decode.export): file, opset, sha256, shapes
    distributed: dict | None = None  # how the fit ran (rtdecode.decode.distributed): world_size, backend, devices

    # the method settings read most: None when the method has none of that name
    @property
    def architecture(self) -> dict | None:  # the benchmark stand-in network
        return self.settings.get("architecture")

    @property
    def encoder(self) -> dict | None:  # inverse / amortized: the encoder configuration
        return self.settings.get("encoder")

    @property
    def inverse(self) -> dict | None:  # inverse / amortized: InverseConfig
        return self.settings.get("inverse")

    @property
    def warm_iterations(self) -> int | None:
        return self.settings.get("warm_iterations")

    @property
    def amortized(self) -> dict | None:  # amortized: the network's config and its kind
        return self.settings.get("amortized")

    @property
    def in_shape(self) -> tuple[int, int]:
        """(N, bins): the window a decoder takes."""
        return (self.neurons, self.window.bins)

    def replace(self, **changes) -> ModelCard:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """The JSON object of card.json, in the layout of its card_version (unset optional fields are
        left out)."""
        out = {name: getattr(self, name) for name in BASE_FIELDS}
        out["window"] = {"lag_min": self.window.lag_min, "bins": self.window.bins}
        out["frame_shape"] = list(self.frame_shape)
        if self.card_version >= 2:
            out["method_settings"] = {self.method: dict(self.settings)}
        optional = {name: getattr(self, name) for name in OPTIONAL_FIELDS}
        if self.card_version == 1:  # version 1's order: training, the settings, onnx, distributed
            optional = {"training": self.training, **{k: self.settings.get(k) for k in V1_SETTINGS},
                        "onnx": self.onnx, "distributed": self.distributed}
        out.update({k: v for k, v in optional.items() if v is not None})
        return out

    @classmethod
    def from_dict(cls, data: dict, where: str = "card") -> ModelCard:
        """A card from the JSON object (version 1 or 2); ModelError names the field that is missing,
        unknown or wrong."""
        if not isinstance(data, dict):
            raise ModelError(f"{where}: expected a JSON object, got {type(data).__name__}")
        if "format" in data and data["format"] != FORMAT:
            raise ModelError(f"{where}: format is '{data['format']}', expected '{FORMAT}'")
        version = data.get("card_version")
        if isinstance(version, int) and version > CARD_VERSION:
            raise ModelError(f"{where}: card version {version} is newer than this rtdecode understands "
                             f"({CARD_VERSION}); upgrade rtdecode")
        v1 = version == 1
        known = BASE_FIELDS + OPTIONAL_FIELDS + (V1_SETTINGS if v1 else ("method_settings",))
        unknown = [k for k in data if k not in known]
        if unknown:
            raise ModelError(f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                             f"(card version {version if v1 else CARD_VERSION} has {', '.join(known)})")
        missing = [k for k in BASE_FIELDS if k not in data]
        if missing:
            raise ModelError(f"{where}: missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        kw = {k: data[k] for k in BASE_FIELDS + OPTIONAL_FIELDS if k in data}
        kw["format"] = _typed(kw, "format", str, where)
        kw["card_version"] = _typed(kw, "card_version", int, where)
        kw["rtdecode_version"] = _typed(kw, "rtdecode_version", str, where)
        kw["created"] = _typed(kw, "created", str, where)
        kw["method"] = _typed(kw, "method", str, where)
        kw["neurons"] = _positive(kw, "neurons", where)
        kw["fps"] = float(_typed(kw, "fps", (int, float), where))
        kw["normalisation"] = _typed(kw, "normalisation", dict, where)
        w = _typed(kw, "window", dict, where)
        extra = [k for k in w if k not in ("lag_min", "bins")]
        if extra or "lag_min" not in w or "bins" not in w:
            raise ModelError(f"{where}: field window must be {{\"lag_min\": int, \"bins\": int}}, got {w}")
        kw["window"] = Window(_typed(w, "lag_min", int, where, "window.lag_min"), _positive(w, "bins", where, "window.bins"))
        fs = kw["frame_shape"]
        if not (isinstance(fs, list) and len(fs) == 2 and all(isinstance(x, int) and x > 0 for x in fs)):
            raise ModelError(f"{where}: field frame_shape must be [height, width] in pixels, got {fs!r}")
        kw["frame_shape"] = (fs[0], fs[1])
        for name in OPTIONAL_FIELDS:
            if kw.get(name) is None:
                kw.pop(name, None)
            else:
                _typed(kw, name, dict, where)
        kw["settings"] = _v1_settings(data) if v1 else _v2_settings(data, kw["method"], where)
        prefix = "" if v1 else f"method_settings.{kw['method']}."
        for name in ("architecture", "encoder", "inverse", "amortized"):
            if kw["settings"].get(name) is not None:
                _typed(kw["settings"], name, dict, where, prefix + name)
        if kw["settings"].get("warm_iterations") is not None:
            _positive(kw["settings"], "warm_iterations", where, prefix + "warm_iterations")
        return cls(**kw)


def _v1_settings(data: dict) -> dict:
    """A version 1 card's top-level settings fields, as a method_settings block."""
    return {k: data[k] for k in V1_SETTINGS if data.get(k) is not None}


def _v2_settings(data: dict, method: str, where: str) -> dict:
    """The block of `method` in method_settings (absent: none); ModelError for another method's block."""
    blocks = data.get("method_settings", {method: {}})
    if not isinstance(blocks, dict) or list(blocks) != [method] or not isinstance(blocks[method], dict):
        raise ModelError(f"{where}: field method_settings must be {{\"{method}\": {{...}}}} (one settings block, "
                         f"of the card's method), got {blocks!r}")
    return dict(blocks[method])


def _typed(d: dict, key: str, types, where: str, name: str | None = None):
    v = d[key]
    if not isinstance(v, types) or isinstance(v, bool):
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise ModelError(f"{where}: field {name or key} must be {want}, got {v!r}")
    return v


def _positive(d: dict, key: str, where: str, name: str | None = None) -> int:
    v = _typed(d, key, int, where, name)
    if v < 1:
        raise ModelError(f"{where}: field {name or key} must be a positive integer, got {v}")
    return v


def new_card(method: str, neurons: int, lag_min: int, bins: int, frame_shape: tuple[int, int],
             fps: float, normalisation: dict | None = None, settings: dict | None = None, **optional) -> ModelCard:
    """A card (version 2) for a decoder that maps activity bins [f+lag_min, f+lag_min+bins) to frame f.
    `settings`: the method's own block; `optional`: training, onnx, distributed, and, added to the
    settings block, any of V1_SETTINGS (architecture, encoder, inverse, warm_iterations, amortized)."""
    block = dict(settings or {})
    for key in V1_SETTINGS:
        if key in optional:
            block[key] = optional.pop(key)
    return ModelCard(
        format=FORMAT,
        card_version=CARD_VERSION,
        rtdecode_version=rtdecode.__version__,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        method=method,
        neurons=int(neurons),
        window=Window(int(lag_min), int(bins)),
        frame_shape=(int(frame_shape[0]), int(frame_shape[1])),
        fps=float(fps),
        normalisation=dict(normalisation or DEFAULT_NORMALISATION),
        settings=block,
        **optional,
    )


def read_card(folder: str | Path) -> ModelCard:
    """The card of a model directory; ModelError says what is missing or wrong."""
    path = Path(folder) / CARD_FILE
    if not path.is_file():
        raise ModelError(f"{folder} is not a model directory: {path.name} is missing (make one with 'rtdecode fit')")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path}: not valid JSON ({exc})") from exc
    return ModelCard.from_dict(data, str(path))


def write_card(folder: str | Path, card: ModelCard) -> Path:
    """Write card.json atomically (the weights are left alone)."""
    path = Path(folder) / CARD_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    os.replace(tmp, path)
    return path
