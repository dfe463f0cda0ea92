"""One live-graph assembly: ingest -> extraction -> activity ring -> decode stage -> publisher,
triggers, recorder; used by `rtdecode run` (run.py), `rtdecode demo` (demo.py) and `rtdecode bench
e2e` / `soak` (bench/e2e.py).

- `load_decoder(model, backends)`: the decoding end, the same everywhere: the activity ring filled
  by the method's window fill (rtdecode.decode.methods.window_fill, the one ring-fill rule) and the
  decode stage on the first backend of `backends` that loads (BackendStage; "numpy" is the model's
  own `predict_window`).
- `live_chain(extraction, decoder)`: extraction + [ring, decode] as one Chain (the whole graph
  checked before the first frame).
- `Decoder.uncertainty`: the model's fold ensemble (rtdecode.live.uncertainty.LiveUncertainty) when it
  has one (image-prior amortized models), else None: the live loop then publishes an 'uncertainty'
  frame beside each decoded one; `assemble(uncertainty=...)` records it too.
- `refiner` (assemble's, a rtdecode.live.refiner.LiveRefiner, `outputs.refined`): the warm-start
  inverse in a background process, publishing 'refined'; recorded as the extras 'refined' / 'refined_of',
  stopped by `LiveGraph.close()` (and by `assemble` when something else fails to start).
- `assemble(...)`: the recorder (with the chain's taps and ROI masks), the publisher and the
  trigger engine around an ingest and a chain, closed together if any of them fails to start;
  `LiveGraph.session()` runs it, `LiveGraph.close()` tears it down.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

from rtdecode.decode import methods
from rtdecode.decode import model as model_dir
from rtdecode.decode.backends import BackendStage, BackendUnavailable, choose
from rtdecode.decode.card import ModelCard
from rtdecode.errors import ConfigError
from rtdecode.extract.planes import Planes
from rtdecode.extract.ring import ActivityRing
from rtdecode.live.refiner import LiveRefiner, record_extras as refined_extras
from rtdecode.live.session import LiveSession
from rtdecode.live.taps import record_extraction, record_planes, recorder_extras
from rtdecode.live.uncertainty import LiveUncertainty
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.stage import Chain, Stage

log = logging.getLogger(__name__)


@dataclass
class Decoder:
    """The decoding end of a live graph: the model card, its activity ring and its decode stage, and the
    model's fold ensemble for the per-pixel uncertainty (None: the model has none)."""

    card: ModelCard
    ring: ActivityRing
    stage: BackendStage
    backend: str
    uncertainty: LiveUncertainty | None = None

    @property
    def stages(self) -> list[Stage]:
        return [self.ring, self.stage]


def load_decoder(model, backends=("numpy",), key: str = "decoder.backends") -> Decoder:
    """The model at `model` on the first backend of `backends` that loads here; ConfigError (under
    `key`) when none does."""
    card, arrays = model_dir.load(model)
    fill = methods.window_fill(arrays, card)  # the method's, from its registry entry
    try:
        backend = choose(list(backends), model, card)
    except BackendUnavailable as exc:
        raise ConfigError(f"{key}: {exc}") from None
    if backend.skipped:
        log.warning("%s unavailable; falling back to %s", ", ".join(backend.skipped), backend.name)
    ring = ActivityRing(card.neurons, card.window.bins, fill=fill)
    uncertainty = LiveUncertainty.from_model(card, arrays)
    if uncertainty is not None:
        log.info("per-pixel uncertainty: the spread of the model's %d fold ridges, published as 'uncertainty'",
                 uncertainty.k)
    return Decoder(card, ring, BackendStage(card, backend), backend.name, uncertainty)


def live_chain(extraction: list[Stage], decoder: Decoder | None) -> Chain | None:
    """extraction + the decoder's [ring, decode] (checked as one graph); the extraction alone without
    a decoder (a calibration block); None when there is neither (several planes, no decoder)."""
    stages = list(extraction) + ([] if decoder is None else decoder.stages)
    return Chain(stages) if stages else None


def close_triggers(engine) -> None:
    """Stop the trigger engine and close its rules' outputs."""
    if engine is None:
        return
    engine.close()
    for rule in engine.rules:
        for sink in rule.sinks or ():
            sink.close()


@dataclass
class LiveGraph:
    """A session's parts, built by `assemble`: run it with `session()`, tear it down with `close()`."""

    ingest: object
    chain: Chain | None
    publisher: Publisher
    recorder: Recorder | None = None
    triggers: object = None
    flips: object = None
    planes: Planes | None = None
    uncertainty: LiveUncertainty | None = None
    closed: list = field(default_factory=list)
    refiner: LiveRefiner | None = None

    def session(self, session_cls=LiveSession, **options) -> LiveSession:
        """The live loop over this graph (options: LiveSession's, e.g. lag_min, placement, collect)."""
        return session_cls(self.ingest, self.chain, self.publisher, recorder=self.recorder, triggers=self.triggers,
                           flips=self.flips, planes=self.planes, uncertainty=self.uncertainty,
                           refiner=self.refiner, **options)

    def close(self, stats: dict | None = None, error: str | None = None, reason: str | None = None) -> None:
        """The refiner, triggers, then the recorder (end.json from `stats`), the ingest, flips and the publisher."""
        if self.closed:
            return
        self.closed.append(True)
        if self.refiner is not None:
            self.refiner.close()
        close_triggers(self.triggers)
        if self.recorder is not None:
            self.recorder.close(stats, error=error, reason=reason)
        self.ingest.close()
        if self.flips is not None:
            self.flips.close()
        self.publisher.close()


def open_recorder(folder, chain: Chain | None, planes: Planes | None, n_neurons: int, frame_shape,
                  meta: dict, fps: float, extras: dict | None = None, compress_level: int | None = None) -> Recorder:
    """A session folder recording the activity, the decoded frames and the chain's taps (plus
    `extras`, {name: (shape, dtype)}, e.g. raw frames), with the ROI masks (one rois.npz, or one per
    field of several planes / scan ROIs). compress_level: the chunks' zlib level (None: the default)."""
    recorder = Recorder(folder, n_neurons, frame_shape, meta=meta, fps=fps,
                        extras=recorder_extras(chain, planes) | (extras or {}), compress_level=compress_level)
    if planes is not None and planes.chains is not None:
        record_planes(recorder, planes)
    elif chain is not None:
        record_extraction(recorder, chain)
    return recorder


def assemble(ingest, chain: Chain | None, publisher: Callable[[], Publisher], *, n_neurons: int, frame_shape,
             fps: float, record=None, meta: dict | None = None, planes: Planes | None = None,
             triggers: Callable | None = None, flips: Callable | None = None, extras: dict | None = None,
             compress_level: int | None = None, uncertainty: LiveUncertainty | None = None,
             refiner: LiveRefiner | None = None) -> LiveGraph:
    """The graph around `ingest` and `chain`: flips (`flips()`), the recorder (when `record` is a
    folder), the publisher (`publisher()`) and the trigger engine (`triggers(recorder, publisher)`,
    None for none); `extras`, `compress_level`: open_recorder's. `uncertainty`: the decoder's fold
    ensemble (Decoder.uncertainty) to publish and record per frame (the recording's extra
    'uncertainty', (H, W) float32, NaN where none), or None. `refiner`: a started
    rtdecode.live.refiner.LiveRefiner (recorded as 'refined' / 'refined_of'), or None. If any of them fails, everything opened is
    closed (the ingest too; a recorder notes the failure) and the error raised."""
    recorder = trig = pub = fl = None
    if uncertainty is not None:
        extras = (extras or {}) | {"uncertainty": (tuple(frame_shape), "float32")}
    if refiner is not None:
        extras = (extras or {}) | refined_extras(frame_shape)
    try:
        fl = flips() if flips is not None else None
        if record is not None:
            recorder = open_recorder(record, chain, planes, n_neurons, frame_shape, meta or {}, fps, extras,
                                     compress_level)
        pub = publisher()
        trig = triggers(recorder, pub) if triggers is not None else None
    except BaseException as exc:
        if refiner is not None:
            refiner.close()
        ingest.close()
        if fl is not None:
            fl.close()
        close_triggers(trig)
        if pub is not None:
            pub.close()
        if recorder is not None:  # a start-up failure is an error of the session, never a clean 0-frame stop
            recorder.close(None, error=f"could not start: {type(exc).__name__}: {exc}")
        raise
    return LiveGraph(ingest, chain, pub, recorder, trig, fl, planes, uncertainty, refiner=refiner)
