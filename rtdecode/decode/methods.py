"""The registry of decoder methods: what `rtdecode fit --method`, `rtdecode reconstruct --method`
and a model card's `method` may say, and what each method does.

An entry carries, as "module:name" paths imported when used (so torch is imported only for the torch
decoders, and the fit functions, which read datasets, live above this layer):
- `decoder`: its loader, a class with `from_arrays(card, arrays)`, `predict_window(window (N, bins),
  out (H, W))`, `predict_trial(responses (N, T))` and, when `live`, `as_torch_module()` (ONNX export);
- `fit`: its fit function, `(job: rtdecode.offline.fit.FitJob) -> ModelCard` (None: `rtdecode fit`
  never makes one);
- `modes`: the ways `rtdecode reconstruct` decodes a model of this method (the first is its default);
  `iterative`: those of them that run the iterative inverse (they take behaviour and report seconds);
- `window_fill`: its live window fill, `(arrays, card) -> (N,)` raw activity that fills the activity
  ring before the first frame (None: zeros);
- `encoder`: fitted through the encoder pipeline (rtdecode.decode.pipeline: torchrun, checkpoints
  and the pipeline options apply); `live`: it decodes a window (the live loop, ONNX export).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from rtdecode.errors import ConfigError, ModelError


@dataclass(frozen=True)
class Method:
    name: str
    decoder: str  # "module:Class"
    modes: tuple[str, ...]  # reconstruct --method values a model of this method supports
    fit: str | None  # "module:function" (FitJob) -> ModelCard, or None
    help: str
    window_fill: str | None = None  # "module:function" (arrays, card) -> (N,), or None: zeros
    iterative: tuple[str, ...] = ()  # modes that run the iterative inverse
    encoder: bool = False  # fitted through the encoder pipeline
    live: bool = True  # decodes a window (predict_window, as_torch_module)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ridge", "rtdecode.decode.ridge:RidgeDecoder", ("ridge",), fit="rtdecode.offline.fit:fit_ridge",
           window_fill="rtdecode.decode.ridge:window_fill",
           help="ridge regression from the activity window to the frame (default)"),
    Method("inverse", "rtdecode.decode.pipeline:PipelineDecoder", ("inverse",), fit="rtdecode.offline.fit:fit_encoder",
           iterative=("inverse",), encoder=True, live=False,
           help="the dynamic encoding model, reconstructed by the iterative inverse"),
    Method("amortized", "rtdecode.decode.pipeline:PipelineDecoder", ("amortized", "inverse", "warm"),
           fit="rtdecode.offline.fit:fit_encoder", window_fill="rtdecode.decode.ridge:amortized_window_fill",
           iterative=("inverse", "warm"), encoder=True,
           help="ridge + a U-Net over a clip of its frames, learned from cross-fitted calibration pairs and "
                "kept only where it beats ridge on validation, and the encoder reconstruct --method warm/inverse "
                "refine it with"),
)}


@dataclass(frozen=True)
class AmortizedKind:
    """`rtdecode fit --method amortized --amortized-kind NAME`: the network trained (the card's amortized.kind).

    Its config class has a `kind` attribute, its name here; `fit_pipeline` (rtdecode.decode.pipeline)
    asks the entry of its config's kind (`kind_of`) how to train it."""

    name: str
    config: str  # "module:ConfigClass": its default settings (imported when asked for: torch)
    network: str  # "module:function" (arrays, card, prefix) -> the network, from weights.npz
    ridge_start: bool  # it starts as ridge: its live window is filled as ridge's (amortized.act_mean),
    # and fit_pipeline's defaults are a ridge start's (no inverse targets, no synthetic movies)
    fit: str  # "module:function" (job: rtdecode.decode.pipeline.AmortizedJob) -> AmortizedFit
    prepare: str | None = None  # "module:function" (cfg, job options) -> cfg, checked before any training


AMORTIZED_KINDS: dict[str, AmortizedKind] = {k.name: k for k in (  # the first is the default
    AmortizedKind("image_prior", "rtdecode.decode.image_prior:ImagePriorConfig",
                  "rtdecode.decode.image_prior:from_arrays", ridge_start=True,
                  fit="rtdecode.decode.pipeline:fit_image_prior_kind",
                  prepare="rtdecode.decode.pipeline:prepare_image_prior"),
    AmortizedKind("ridge_residual", "rtdecode.decode.residual:ResidualConfig",
                  "rtdecode.decode.residual:from_arrays", ridge_start=True,
                  fit="rtdecode.decode.pipeline:fit_residual_kind"),
)}

# the older stand-alone network (rtdecode.decode.amortized.AmortizedNet): not a `--amortized-kind`
# choice and its cards carry no kind (v1 cards load it); kept for the research benchmarks that train it
LEGACY_AMORTIZED = AmortizedKind("standalone", "rtdecode.decode.amortized:AmortizedConfig",
                                 "rtdecode.decode.amortized:net_from_arrays", ridge_start=False,
                                 fit="rtdecode.decode.pipeline:fit_standalone_kind")


def kind_of(cfg) -> AmortizedKind:
    """The entry of an amortized network's config object (its `kind`); ConfigError lists the valid kinds."""
    name = getattr(cfg, "kind", None)
    if name in AMORTIZED_KINDS:
        return AMORTIZED_KINDS[name]
    if name == LEGACY_AMORTIZED.name:
        return LEGACY_AMORTIZED
    raise ConfigError(f"unknown amortized kind {name!r} ({type(cfg).__name__}); valid: {', '.join(AMORTIZED_KINDS)}")


def resolve(path: str):
    """The object a "module:name" path names (imported now)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def amortized_config(kind: str):
    """A default config object of the amortized network `kind`; ConfigError lists the valid kinds."""
    if kind not in AMORTIZED_KINDS:
        raise ConfigError(f"unknown amortized kind {kind!r}; valid: {', '.join(AMORTIZED_KINDS)}")
    return resolve(AMORTIZED_KINDS[kind].config)()


def register(method: Method) -> None:
    """Add a method (e.g. the benchmark's stand-in network, rtdecode.bench.standin)."""
    METHODS[method.name] = method


def fit_methods() -> tuple[str, ...]:
    """`rtdecode fit --method` choices."""
    return tuple(m.name for m in METHODS.values() if m.fit is not None)


def encoder_methods() -> tuple[str, ...]:
    return tuple(m.name for m in METHODS.values() if m.encoder)


def reconstruct_modes() -> tuple[str, ...]:
    """`rtdecode reconstruct --method` choices: every mode of every fitted method, in order."""
    out: list[str] = []
    for m in METHODS.values():
        if m.fit is not None:
            out += [x for x in m.modes if x not in out]
    return tuple(out)


def check_fit_method(name: str) -> Method:
    """The method called `name` if `rtdecode fit` can train it; ConfigError lists the valid ones."""
    if name not in fit_methods():
        raise ConfigError(f"unknown fit method {name!r}; valid: {', '.join(fit_methods())}")
    return METHODS[name]


def get(name: str, where: str = "model") -> Method:
    """The method called `name` (a model card's); ModelError lists the methods this rtdecode knows."""
    m = METHODS.get(name)
    if m is None:
        raise ModelError(f"{where}: method '{name}' unknown; this rtdecode knows: {', '.join(METHODS)}")
    return m


def decoder_class(name: str, where: str = "model"):
    """The decoder class of method `name` (its loader); ModelError lists the methods this rtdecode knows."""
    return resolve(get(name, where).decoder)


def window_fill(arrays: dict, card):
    """(N,) raw activity that fills the live activity ring before the first frame: the method's
    `window_fill`, or zeros."""
    m = get(card.method)
    if m.window_fill is None:
        return np.zeros(card.neurons, np.float32)
    return resolve(m.window_fill)(arrays, card)
