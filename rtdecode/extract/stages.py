"""The extraction-stage registry and the chain builders: the chain as data.

A chain spec lists stages by registered name, each with its options, e.g.

    [{"register": {"crop": [256, 256]}}, "traces", {"dff": None}, {"deconvolve": {"method": "oasis"}}]
    [{"bandpass": {"band": [300, 6000]}}, "common_reference", {"detect": {"k": 4.5}}, "bin"]

(None or a missing entry: the stage's defaults; `spec=None`: the modality's default chain,
DEFAULT_STAGES or DEFAULT_EPHYS_STAGES). Each entry belongs to one modality: "two_photon" (the rig
file's `extraction.two_photon.stages`; `build_chain` here) or "ephys" (`extraction.ephys.stages`;
rtdecode.extract.ephys_stages.build_ephys_stages). `rtdecode run`, `extract`, `dataset`, `bench
extract`, the demo and the benchmarks all build their chains through `build_stages`, so offline and
live run the same stages. Each registered class has `Options` (a rtdecode.stage.StageOptions:
typed, documented in docs/rig-file.md) and `from_options(ctx, in_spec, options)`; `in_spec` is what
the stage before it gives (None for the first: it builds from the context, `ChainContext` or
rtdecode.extract.ephys_stages.EphysContext).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from rtdecode.errors import ConfigError, StageError
from rtdecode.stage import Chain

log = logging.getLogger(__name__)


# what a stage may take, per modality
TAKES = {"two_photon": ("frame", "image", "vector"), "ephys": ("samples", "events")}


@dataclass(frozen=True)
class StageType:
    """A registered stage: its name in a chain spec, its class ("module:Class"), what it takes and
    the modality whose chains may list it. Two-photon: "frame" (the raw acquisition frame), "image"
    (a float32 (H, W) registered frame) or "vector" (float32 (n,), one value per ROI). Ephys:
    "samples" (a block (n <= B, C) of samples) or "events" (an int64 (2, E + 1) event block,
    rtdecode.extract.ephys_stages)."""

    name: str
    cls: str
    takes: str
    help: str = ""
    modality: str = "two_photon"

    def __post_init__(self):
        if self.takes not in TAKES.get(self.modality, ()):
            raise ConfigError(f"stage {self.name}: a {self.modality} stage takes one of "
                              f"{', '.join(TAKES.get(self.modality, ()))}, not {self.takes!r}")

    def load(self) -> type:
        module, attr = self.cls.split(":")
        return getattr(importlib.import_module(module), attr)


STAGES: dict[str, StageType] = {}


def register(entry: StageType) -> StageType:
    """Add (or replace) a stage type; the rig file and every chain builder then accept its name."""
    STAGES[entry.name] = entry
    return entry


register(StageType("register", "rtdecode.extract.register:Register", "frame",
                   "rigid motion correction against the reference image"))
register(StageType("traces", "rtdecode.extract.traces:Traces", "image",
                   "each ROI's fluorescence minus r x its neuropil"))
register(StageType("dff", "rtdecode.extract.dff:DeltaF", "vector", "dF/F against a running baseline"))
register(StageType("deconvolve", "rtdecode.extract.deconv:Deconvolve", "vector",
                   "activity >= 0: a threshold on the AR(1) innovation, or online OASIS"))

register(StageType("bandpass", "rtdecode.extract.ephys_stages:BandPass", "samples",
                   "Butterworth band-pass of each channel", "ephys"))
register(StageType("common_reference", "rtdecode.extract.ephys_stages:CommonReference", "samples",
                   "minus the mean (or median) over channels at each sample", "ephys"))
register(StageType("detect", "rtdecode.extract.ephys_stages:Detect", "samples",
                   "negative threshold crossings -> an event block", "ephys"))
register(StageType("bin", "rtdecode.extract.ephys_stages:BinCounts", "events",
                   "events per channel in the open bin", "ephys"))
register(StageType("bin_units", "rtdecode.extract.ephys_stages:BinUnits", "events",
                   "sorted spikes per electrode or unit in the open bin (eventbroadcaster)", "ephys"))

DEFAULT_STAGES = ("register", "traces", "dff", "deconvolve")
DEFAULT_EPHYS_STAGES = ("bandpass", "common_reference", "detect", "bin")
DEFAULTS = {"two_photon": DEFAULT_STAGES, "ephys": DEFAULT_EPHYS_STAGES}


def names(modality: str = "two_photon") -> list[str]:
    """The registered stages a `modality` chain may list, in registration order."""
    return [n for n, e in STAGES.items() if e.modality == modality]


@dataclass(frozen=True)
class ChainContext:
    """What a two-photon chain's stages are built on: the ROIs, the registration reference, the frame
    rate, the raw frames' dtype, and fast (Numba / scipy kernels) or the NumPy references."""

    rois: Any
    reference: np.ndarray
    fps: float = 30.0
    frame_dtype: Any = np.uint16
    fast: bool = True


def get(name: str, modality: str = "two_photon") -> StageType:
    """The registered `modality` stage `name`; ConfigError listing the valid names otherwise."""
    entry = STAGES.get(name) if isinstance(name, str) else None
    if entry is None or entry.modality != modality:
        raise ConfigError(f"unknown extraction stage {name!r}; valid: {', '.join(names(modality))}")
    return entry


def parse_spec(spec, modality: str = "two_photon") -> list[tuple[str, Any]]:
    """[(name, options)] of a `modality` chain spec (see the module docstring), the options checked
    against each stage's `Options`; ConfigError naming the stage and the problem."""
    if spec is None:
        spec = list(DEFAULTS[modality])
    if not isinstance(spec, (list, tuple)) or not spec:
        raise ConfigError(f"a chain spec is a non-empty list of stages, got {spec!r}")
    out = []
    for i, item in enumerate(spec):
        if isinstance(item, str):
            name, given = item, None
        elif isinstance(item, dict) and len(item) == 1:
            (name, given), = item.items()
        else:
            raise ConfigError(f"stage {i}: give a stage name or {{name: {{options}}}}, got {item!r}")
        cls = get(name, modality).load()
        if given is not None and not isinstance(given, dict):
            raise ConfigError(f"stage {i} ({name}): options must be a mapping, got {given!r}")
        try:
            out.append((name, cls.Options(**(given or {}))))
        except ValidationError as exc:
            err = exc.errors(include_url=False)[0]
            where = ".".join(str(p) for p in err["loc"])
            allowed = ", ".join(cls.Options.model_fields)
            raise ConfigError(f"stage {i} ({name}): {where}: {err['msg']} (options: {allowed})") from None
    return out


def default_spec(**options) -> list[dict]:
    """DEFAULT_STAGES with `options` given to the stage that has an option of that name, e.g.
    `default_spec(crop=(64, 64), tau_s=1.2)`; ConfigError for a name no default stage has."""
    spec = {name: {} for name in DEFAULT_STAGES}
    for key, value in options.items():
        owner = next((n for n in DEFAULT_STAGES if key in get(n).load().Options.model_fields), None)
        if owner is None:
            raise ConfigError(f"no default extraction stage has an option {key!r}")
        if value is not None:
            spec[owner][key] = value
    return [{name: opts} for name, opts in spec.items()]


def build_stages(spec, ctx, modality: str = "two_photon") -> list:
    """The stages of a `modality` chain spec (None: its default chain), each built by its class's
    `from_options(ctx, in_spec, options)` on what the stage before it gives; not yet checked as a graph."""
    stages = []
    for name, opts in parse_spec(spec, modality):
        stages.append(get(name, modality).load().from_options(ctx, stages[-1].out_spec if stages else None, opts))
    return stages


def build_chain(spec, rois, reference: np.ndarray, *, fps: float = 30.0, frame_dtype=np.uint16,
                backend: str = "fast") -> Chain:
    """The chain of `spec` (None: DEFAULT_STAGES, uint16 (H, W) raw frame -> float32 (n,) activity).

    reference: (H, W) image matching `rois.frame_shape` (the ROIs must be in its coordinates).
    frame_dtype: the raw frames' type, uint16 (default) or int16 (what ScanImage acquires).
    backend: "fast" (Numba kernels, scipy's CSR product) or "numpy" (every stage's reference).
    The graph is checked (each stage gives what the next takes); call `.warm_up()` before acquisition.
    """
    if backend not in ("fast", "numpy"):
        raise ConfigError(f"build_chain: backend must be 'fast' or 'numpy', got {backend!r}")
    ref = np.asarray(reference)
    if ref.shape != tuple(rois.frame_shape):
        raise StageError(f"reference is {ref.shape} but the ROIs are on a {tuple(rois.frame_shape)} frame; "
                         "use the reference of the same field of view")
    ctx = ChainContext(rois, ref, float(fps), np.dtype(frame_dtype), backend == "fast")
    stages = build_stages(spec, ctx, "two_photon")
    if ctx.fast:
        from rtdecode.extract.kernels import warm_up_kernels

        warm_up_kernels()  # compile / load every kernel now, not on the first frame
    log.debug("chain: %s", " -> ".join(s.name for s in stages))
    return Chain(stages)
