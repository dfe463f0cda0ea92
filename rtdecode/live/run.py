"""`rtdecode run CONFIG`: a live session on a rig, from a typed YAML rig file (rtdecode.live.config).

Builds the stage graph (extraction -> activity ring -> decoder backend), checks it, warms every
stage, then runs the live loop until the source ends, `--seconds` pass or Ctrl-C; records the
session when asked. Ephys sources (openephys, eventbroadcaster) go through the Open Ephys adapter
(rtdecode.live.ephys_activity), which bins threshold crossings or sorted spikes into activity
vectors: their chain is [activity ring, decoder]. The decoder runs on the first backend of `decoder.backends` that loads here
('numpy' is the model's own reference implementation).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from rtdecode import decode
from rtdecode.live.config import RigConfig, load_config
from rtdecode.decode import model as model_dir
from rtdecode.errors import ConfigError
from rtdecode.sources.ingest import Ingest, max_message_bytes
from rtdecode.live.session import LiveSession, limit_blas_threads
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.extract.ring import ActivityRing
from rtdecode.stage import Chain

log = logging.getLogger(__name__)


def decoder_stage(cfg: RigConfig):
    """(card, stage, fill, backend name): the first backend of the preference list that loads."""
    card, arrays = model_dir.load(cfg.decoder.model)
    fill = arrays["act_mean"] if "act_mean" in arrays else np.zeros(card["neurons"], np.float32)
    compiled = [b for b in cfg.decoder.backends if b != "numpy"]
    if compiled:
        from rtdecode.decode.backends import BackendStage, BackendUnavailable, choose

        try:
            backend = choose(compiled, cfg.decoder.model, card)
            return card, BackendStage(card, backend), fill, backend.name
        except BackendUnavailable as exc:
            if "numpy" not in cfg.decoder.backends:
                raise ConfigError(f"decoder.backends: {exc}") from None
            log.warning("%s; falling back to numpy", exc)
    card, dec = decode.load(cfg.decoder.model)
    return card, decode.DecodeStage(card, dec), fill, "numpy"


def extraction_stages(cfg: RigConfig) -> list:
    """The stages before the activity ring: two-photon extraction, or none for ephys (the Open Ephys
    adapter hands out activity vectors already: rtdecode.live.ephys_activity)."""
    tp = cfg.extraction.two_photon
    if cfg.source.protocol != "rtframe":
        return []
    if tp is None:
        raise ConfigError("source.protocol rtframe needs extraction.two_photon")
    from rtdecode.extract import build_chain
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.rois import load_suite2p

    rois = load_suite2p(tp.rois)
    if tp.reference is not None:
        reference = np.load(tp.reference, allow_pickle=False)
    else:
        reference = suite2p_reference(tp.rois)
        if reference is None:
            raise ConfigError(f"extraction.two_photon: no reference image: {tp.rois}/ops.npy has no meanImg; "
                              "set extraction.two_photon.reference to a .npy image")
    chain = build_chain(rois, reference, fps=tp.fps, crop=tuple(tp.crop), max_shift=tp.max_shift,
                        r=tp.neuropil_r, tau_s=tp.tau_s, frame_dtype=np.dtype(tp.frame_dtype))
    return chain.stages


def make_ingest(cfg: RigConfig, card: dict, frame_bytes: int | None = None):
    """The message source of the live loop: rtframe subscribers (refusing messages much larger than
    `frame_bytes`, the acquisition frame's size), or the Open Ephys adapter, whose input count
    (channels, or units) must equal the model's neurons."""
    if cfg.source.protocol == "rtframe":
        limit = max_message_bytes(max(frame_bytes or 0, 4 * 2**20))  # stimulus images may ride along too
        return Ingest(cfg.source.address, max_msg_bytes=limit, freshness=cfg.freshness)
    from rtdecode.live.ephys_activity import make_activity_ingest

    n = int(card["neurons"])
    src = cfg.source
    given = src.channels if src.protocol == "openephys" else src.units
    if given is not None and len(given) != n:
        key = "source.channels" if src.protocol == "openephys" else "source.units"
        raise ConfigError(f"{key} lists {len(given)} {'channels' if key.endswith('channels') else 'units'} but "
                          f"the model card of {cfg.decoder.model} has {n} neurons; they must be equal")
    return make_activity_ingest(cfg, n)


def make_triggers(cfg: RigConfig, frame_shape: tuple[int, int], recorder):
    """A TriggerEngine with one rule and one output per `triggers` entry, or None without any."""
    if not cfg.triggers:
        return None
    from rtdecode.outputs.triggers import LuminanceRule, MotionEnergyRule, SimilarityRule, TriggerEngine
    from rtdecode.outputs.triggers.sinks import NetworkEventsSink, SerialSink, ZmqSink

    rules = []
    for i, t in enumerate(cfg.triggers):
        r = t.rule
        if r is None:
            raise ConfigError(f"triggers.{i}.rule: '{t.name}' has no rule (kind similarity|luminance|motion, "
                              "threshold, ...); rtdecode run needs one")
        region = None
        if r.region is not None:
            y0, y1, x0, x1 = r.region
            if y1 > frame_shape[0] or x1 > frame_shape[1]:
                raise ConfigError(f"triggers.{i}.rule.region: {list(r.region)} falls outside the decoded "
                                  f"frame {list(frame_shape)}")
            region = np.zeros(frame_shape, bool)
            region[y0:y1, x0:x1] = True
        common = dict(consecutive=r.consecutive, refractory_s=t.min_interval_s, below=r.below)
        if r.kind == "similarity":
            target = np.load(r.target, allow_pickle=False)
            if target.shape != tuple(frame_shape):
                raise ConfigError(f"triggers.{i}.rule.target: {r.target} is {target.shape}, the decoded frame "
                                  f"is {tuple(frame_shape)}")
            rule = SimilarityRule(t.name, target, r.threshold, region, **common)
        elif r.kind == "luminance":
            rule = LuminanceRule(t.name, r.threshold, frame_shape, region, **common)
        else:
            rule = MotionEnergyRule(t.name, r.threshold, frame_shape, region, **common)
        if t.kind == "zmq":
            rule.sinks = [ZmqSink(Publisher(t.address))]
        elif t.kind == "network_events":
            from rtdecode.live.config import split_endpoint

            host, port = split_endpoint(t.address)
            rule.sinks = [NetworkEventsSink(host, port, line=t.line)]
        else:
            rule.sinks = [SerialSink(t.address)]
        rules.append(rule)
    return TriggerEngine(rules, [], record=recorder.trigger if recorder is not None else None)


def close_triggers(engine) -> None:
    if engine is None:
        return
    engine.close()
    for rule in engine.rules:
        for sink in rule.sinks or ():
            sink.close()


def run_session(config: str | Path, record: str | Path | None = None, seconds: float | None = None) -> dict:
    """Run a live session; returns its stats (also in the session's end.json when recording)."""
    cfg = load_config(config)
    stages = extraction_stages(cfg)
    card, dec_stage, fill, backend = decoder_stage(cfg)
    ring = ActivityRing(card["neurons"], card["window"]["bins"], fill=fill)
    chain = Chain(stages + [ring, dec_stage])  # checks the whole graph before the first frame
    limit_blas_threads(cfg.decoder.blas_threads)
    t0 = time.perf_counter()
    chain.warm_up()
    log.info("stages warmed up in %.0f ms; decoder backend %s", (time.perf_counter() - t0) * 1e3, backend)
    record = record if record is not None else cfg.outputs.record
    frame_bytes = None
    if stages and getattr(stages[0], "in_spec", None) is not None:
        spec = stages[0].in_spec
        frame_bytes = int(np.prod(spec.shape)) * np.dtype(spec.dtype).itemsize
    ingest = make_ingest(cfg, card, frame_bytes)  # before the session folder: it may refuse the model (neurons)
    recorder = triggers = None
    try:
        if record is not None:
            recorder = Recorder(record, card["neurons"], tuple(card["frame_shape"]),
                                meta={"config": cfg.model_dump(mode="json"), "model_card": card, "backend": backend})
        triggers = make_triggers(cfg, tuple(card["frame_shape"]), recorder)
        pub = Publisher(cfg.outputs.publish)
    except BaseException:
        ingest.close()
        close_triggers(triggers)
        if recorder is not None:
            recorder.close({"error": "could not start"})
        raise
    session = LiveSession(ingest, chain, pub, lag_min=card["window"]["lag_min"], recorder=recorder,
                          triggers=triggers, max_age_s=cfg.max_age_ms / 1e3)
    log.info("live: %s -> %s", ", ".join(cfg.source.address), pub.endpoint)
    error = None
    try:
        session.run(seconds=seconds, idle_timeout_s=float("inf") if seconds is None else seconds)
        if session.result.stopped_by == "errors":
            error = "stopped after repeated errors processing frames"
    except KeyboardInterrupt:
        log.info("stopped by the user")
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        stats = session.stats() | {"backend": backend}
        close_triggers(triggers)
        if recorder is not None:
            recorder.close(stats, error=error)
        ingest.close()
        pub.close()
    return stats
