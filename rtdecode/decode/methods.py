"""The registry of decoder methods: what `rtdecode fit --method`, `rtdecode reconstruct --method`
and a model card's `method` may say. Adding a method here makes the command line, the loader and
their error messages know it.

A method names its decoder class ("module:Class", imported when a model of that method is loaded,
so torch is imported only for the torch decoders). The class has `from_arrays(card, arrays)` and
`predict_window(window (N, bins), out (H, W))`; `modes` are the ways `rtdecode reconstruct` can
decode with a model of this method (the first is its default).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rtdecode.errors import ConfigError, ModelError


@dataclass(frozen=True)
class Method:
    name: str
    decoder: str  # "module:Class"
    modes: tuple[str, ...]  # reconstruct --method values a model of this method supports
    encoder: bool  # fitted through the dynamic encoder (rtdecode.decode.pipeline)
    fit: bool  # `rtdecode fit --method NAME` trains it
    help: str


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("ridge", "rtdecode.decode.ridge:RidgeDecoder", ("ridge",), encoder=False, fit=True,
           help="ridge regression from the activity window to the frame (default)"),
    Method("inverse", "rtdecode.decode.pipeline:PipelineDecoder", ("inverse",), encoder=True, fit=True,
           help="the dynamic encoding model, reconstructed by the iterative inverse"),
    Method("amortized", "rtdecode.decode.pipeline:PipelineDecoder", ("amortized", "inverse", "warm"),
           encoder=True, fit=True,
           help="ridge + a U-Net over a clip of its frames, learned from cross-fitted calibration pairs and "
                "kept only where it beats ridge on validation, and the encoder reconstruct --method warm/inverse "
                "refine it with"),
)}


# `rtdecode fit --method amortized --amortized-kind NAME`: the network trained (the card's amortized.kind),
# as "module:ConfigClass" (imported when asked for: torch); the first is the default.
AMORTIZED_KINDS: dict[str, str] = {
    "image_prior": "rtdecode.decode.image_prior:ImagePriorConfig",
    "ridge_residual": "rtdecode.decode.residual:ResidualConfig",
}


def amortized_config(kind: str):
    """A default config object of the amortized network `kind`; ConfigError lists the valid kinds."""
    if kind not in AMORTIZED_KINDS:
        raise ConfigError(f"unknown amortized kind {kind!r}; valid: {', '.join(AMORTIZED_KINDS)}")
    module, _, cls = AMORTIZED_KINDS[kind].partition(":")
    return getattr(importlib.import_module(module), cls)()


def register(method: Method) -> None:
    """Add a method (e.g. the benchmark's stand-in network, rtdecode.bench.standin)."""
    METHODS[method.name] = method


def fit_methods() -> tuple[str, ...]:
    """`rtdecode fit --method` choices."""
    return tuple(m.name for m in METHODS.values() if m.fit)


def encoder_methods() -> tuple[str, ...]:
    return tuple(m.name for m in METHODS.values() if m.encoder)


def reconstruct_modes() -> tuple[str, ...]:
    """`rtdecode reconstruct --method` choices: every mode of every fitted method, in order."""
    out: list[str] = []
    for m in METHODS.values():
        if m.fit:
            out += [x for x in m.modes if x not in out]
    return tuple(out)


def check_fit_method(name: str) -> Method:
    """The method called `name` if `rtdecode fit` can train it; ConfigError lists the valid ones."""
    if name not in fit_methods():
        raise ConfigError(f"unknown fit method {name!r}; valid: {', '.join(fit_methods())}")
    return METHODS[name]


def decoder_class(name: str, where: str = "model"):
    """The decoder class of method `name`; ModelError lists the methods this rtdecode knows."""
    m = METHODS.get(name)
    if m is None:
        raise ModelError(f"{where}: method '{name}' unknown; this rtdecode knows: {', '.join(METHODS)}")
    module, _, cls = m.decoder.partition(":")
    return getattr(importlib.import_module(module), cls)
