"""`rtdecode run CONFIG`: a live session on a rig, from a typed YAML rig file (rtdecode.live.config).

Builds the stage graph (extraction -> activity ring -> decoder backend), checks it, warms every
stage, then runs the live loop until the source ends, `--seconds` pass or Ctrl-C; records the
session when asked. Two-photon: frames of `source.channel` and `source.planes` only (others counted
in `ignored_frames`); one plane: one chain, frame by frame; several planes: one extraction chain per
plane (rtdecode.extract.planes), the volume's activity vector into [activity ring, decoder]. Without a
decoder in the rig file: a calibration block, extraction and recording only. The ingest is built by
`source.protocol`'s registry entry (rtdecode.sources.protocols). Ephys sources (openephys,
eventbroadcaster): the extraction stages (bandpass, common_reference, detect, bin; or bin_units for
sorted spikes) run per block of samples inside the Open Ephys adapter (rtdecode.live.ephys), which
hands out one activity vector per bin to the chain [activity ring, decoder]; the whole graph is
checked before the adapter connects, and every stage's time is reported under `stages_ms`. The
decoder runs on the first backend of `decoder.backends` that loads here ('numpy' is the model's
own reference implementation).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from rtdecode.live.ephys import ephys_stages
from rtdecode.decode.card import ModelCard
from rtdecode.live.config import RigConfig, load_config
from rtdecode.errors import ConfigError
from rtdecode.sources import protocols
from rtdecode.sources.flips import FlipAligner, TtlFlips
from rtdecode.extract.planes import Planes
from rtdecode.live.cpu import Placement
from rtdecode.live.graph import assemble, live_chain, load_decoder
from rtdecode.live.refiner import check_refinable, make_refiner
from rtdecode.live.session import StopOnSignals, limit_blas_threads
from rtdecode.outputs.peer_limit import raise_descriptor_limit
from rtdecode.outputs.publish import Publisher
from rtdecode.sources.address import split_endpoint
from rtdecode.stage import Chain, check_graph

log = logging.getLogger(__name__)

CALIBRATION_FRAME_SHAPE = (36, 64)  # stimulus images recorded without a decoder: the dataset layout (docs/design.md 3.2)


def plane_chains(cfg: RigConfig) -> list[Chain]:
    """One two-photon extraction chain per field: per plane of `source.planes`, or per (plane, scan ROI)
    of `source.scan_rois`, plane-major (each its own ROIs and reference)."""
    tp = cfg.extraction.two_photon
    if tp is None:
        raise ConfigError(f"source.protocol {cfg.source.protocol} needs extraction.two_photon")
    from rtdecode.extract import build_chain
    from rtdecode.extract.offline import suite2p_reference
    from rtdecode.extract.rois import load_suite2p

    chains = []
    for rois_dir, ref_path in zip(tp.rois_per_plane, tp.reference_per_plane):
        rois = load_suite2p(rois_dir)
        if ref_path is not None:
            reference = np.load(ref_path, allow_pickle=False)
        else:
            reference = suite2p_reference(rois_dir)
            if reference is None:
                raise ConfigError(f"extraction.two_photon: no reference image: {rois_dir}/ops.npy has no meanImg; "
                                  "set extraction.two_photon.reference to a .npy image")
        chains.append(build_chain(tp.chain_spec(), rois, reference, fps=tp.fps, frame_dtype=np.dtype(tp.frame_dtype)))
    return chains


def check_activity_order(cfg: RigConfig, planes: Planes) -> None:
    """ConfigError if the model folder's activity_order.json (copied by `rtdecode fit` from a dataset
    of several (plane, scan ROI) fields) lists other fields, or other columns, than the rig file's
    source.planes x source.scan_rois give. Models without the file (one field, older fits) pass."""
    path = Path(cfg.decoder.model) / "activity_order.json"
    if not path.is_file():
        return
    try:
        fitted = json.loads(path.read_text(encoding="utf-8"))
        want = [(int(f["plane"]), int(f["scan_roi"]), tuple(f.get("columns") or ())) for f in fitted["fields"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"decoder.model: {path} is not a readable activity order ({exc}); refit the model, "
                          "or delete the file to skip this check") from None
    order = planes.order()
    have = [(f["plane"], f["scan_roi"], tuple(f.get("columns") or ())) for f in order["fields"]]
    if [w[:2] for w in want] != [h[:2] for h in have] or (planes.chains is not None and want != have):
        raise ConfigError(f"decoder.model: the model was fitted on the fields (plane, scan ROI, columns) {want} "
                          f"({path}), but source.planes {planes.planes} x source.scan_rois {planes.scan_rois} and "
                          f"extraction.two_photon.rois give {have}; use the rig file the model was fitted for, "
                          "or refit on data extracted with this one")


def extraction_stages(cfg: RigConfig) -> list:
    """The two-photon stages before the activity ring (one plane), or none for ephys (its stages depend
    on the model's inputs and run per block in the Open Ephys adapter: rtdecode.live.ephys.ephys_stages)."""
    if protocols.get(cfg.source.protocol).modality != "two_photon":
        return []
    chains = plane_chains(cfg)
    if len(chains) != 1:
        raise ConfigError(f"source.planes / source.scan_rois give {len(chains)} fields: use plane_chains()")
    return chains[0].stages


def make_ingest(cfg: RigConfig, stages: list, frame_bytes: int | None = None):
    """The message source of `source.protocol`, built by its registry entry (rtdecode.sources.protocols):
    ephys ingests run `stages` (checked and warmed); two-photon ones refuse messages much larger than
    `frame_bytes`, the acquisition frame's size."""
    return protocols.get(cfg.source.protocol).make_ingest(cfg, stages, frame_bytes)


def check_ephys_inputs(cfg: RigConfig, card: ModelCard) -> None:
    """The inputs the rig file lists (the protocol's `inputs_key`: channels, units) must be as many as
    the model's neurons."""
    n = card.neurons
    key = protocols.get(cfg.source.protocol).inputs_key
    given = None if key is None else getattr(cfg.source, key)
    if given is not None and len(given) != n:
        raise ConfigError(f"source.{key} lists {len(given)} {key} but "
                          f"the model card of {cfg.decoder.model} has {n} neurons; they must be equal")


def ephys_inputs(cfg: RigConfig) -> int:
    """The inputs of an ephys calibration block (no model): as many as the protocol's `inputs_key`
    (source.channels, source.units) lists."""
    key = protocols.get(cfg.source.protocol).inputs_key
    given = None if key is None else getattr(cfg.source, key)
    if not given:
        raise ConfigError(f"source.{key}: a calibration block (no decoder) needs the inputs listed, in order")
    return len(given)


def make_triggers(cfg: RigConfig, frame_shape: tuple[int, int], recorder):
    """A TriggerEngine with one rule and one output per `triggers` entry, or None without any."""
    if not cfg.triggers or cfg.decoder is None:
        return None
    from rtdecode.outputs.triggers import TriggerEngine

    rules = []
    try:
        _add_rules(cfg, frame_shape, rules)
    except BaseException:  # a sink bound before the failure must not keep its port
        for rule in rules:
            for sink in rule.sinks or ():
                sink.close()
        raise
    return TriggerEngine(rules, [], record=recorder.trigger if recorder is not None else None)


def _add_rules(cfg: RigConfig, frame_shape: tuple[int, int], rules: list) -> None:
    """One rule per `triggers` entry appended to `rules`, each with its output."""
    from rtdecode.outputs.triggers import LuminanceRule, MotionEnergyRule, SimilarityRule
    from rtdecode.outputs.triggers.sinks import NetworkEventsSink, SerialSink, ZmqSink

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
            rule.sinks = [ZmqSink(Publisher(t.address, max_peers=cfg.outputs.max_peers,
                                            what=f"trigger '{t.name}'", key=f"triggers.{i}.address"))]
        elif t.kind == "network_events":
            host, port = split_endpoint(t.address)
            rule.sinks = [NetworkEventsSink(host, port, line=t.line, width_s=t.pulse_ms / 1e3)]
        else:
            rule.sinks = [SerialSink(t.address)]
        rules.append(rule)


def _frame_rate(cfg: RigConfig) -> float:
    """Frames (two-photon) or activity bins (ephys) per second."""
    if cfg.extraction.two_photon is not None:
        return cfg.extraction.two_photon.fps
    return 1000.0 / cfg.extraction.ephys.bin_ms


def make_flips(cfg: RigConfig):
    """The hardware flip-time input of `stimulus.flip_times: ttl` (rtdecode.sources.flips), or None."""
    ttl = cfg.stimulus.ttl
    if cfg.stimulus.flip_times != "ttl" or ttl is None:
        return None
    aligner = FlipAligner(tolerance_s=ttl.tolerance_ms / 1e3, max_latency_s=ttl.max_latency_ms / 1e3)
    log.info("flip times: TTL line %d (%s edges) of the Event Broadcaster at %s", ttl.line, ttl.edges, ttl.address)
    return TtlFlips(ttl.address, ttl.line - 1, aligner, edges=ttl.edges)


def run_session(config: str | Path, record: str | Path | None = None, seconds: float | None = None) -> dict:
    """Run a live session; returns its stats (also in the session's end.json when recording).

    Without a decoder in the rig file the session is a calibration block: extraction only, recorded
    (activity, stimulus shown, frame metadata) so that `rtdecode fit SESSION` can train on it.

    SIGTERM and SIGINT (also a SIGINT inherited as ignored) stop the session cleanly, from start-up
    on: the loop ends at its next turn, the open chunk is flushed, end.json is written and status.json
    says 'stopped' with the signal as its reason (rtdecode.live.session.StopOnSignals)."""
    with StopOnSignals() as stopper:
        return _run_session(config, record, seconds, stopper)


def _run_session(config, record, seconds, stopper: StopOnSignals) -> dict:
    cfg = load_config(config)
    ephys = protocols.get(cfg.source.protocol).modality == "ephys"
    record = record if record is not None else cfg.outputs.record
    if cfg.decoder is None and record is None:
        raise ConfigError("decoder: the rig file has no decoder, so this session is a calibration block; give "
                          "--record DIR (or outputs.record) to keep it, then fit on it: rtdecode fit DIR --out MODEL")
    planes = None
    stages = []
    tp = cfg.extraction.two_photon
    if not ephys and tp.rois is None:  # a new field of view: raw frames recorded, nothing extracted
        planes = Planes(cfg.source.frame_channel, cfg.source.frame_planes, scan_rois=cfg.source.frame_scan_rois)
    elif not ephys:
        chains = plane_chains(cfg)
        if len(chains) == 1:  # one plane: the extraction is the chain's head, frames only filtered
            stages = chains[0].stages
            planes = Planes(cfg.source.frame_channel, cfg.source.frame_planes, scan_rois=cfg.source.frame_scan_rois)
        else:
            planes = Planes(cfg.source.frame_channel, cfg.source.frame_planes, chains,
                            scan_rois=cfg.source.frame_scan_rois)
    card = decoder = backend = None
    if cfg.decoder is not None:
        decoder = load_decoder(cfg.decoder.model, cfg.decoder.backends)
        card, backend = decoder.card, decoder.backend
        if planes is not None and planes.chains is not None and planes.n != card.neurons:
            raise ConfigError(f"extraction.two_photon.rois: the fields (plane, scan ROI) {planes.fields} hold "
                              f"{planes.n} ROIs in all, "
                              f"the model {cfg.decoder.model} has {card.neurons} neurons; they must be equal")
        if planes is not None:
            check_activity_order(cfg, planes)
    if cfg.outputs.refined:  # before anything is opened: a model without an encoder cannot refine
        check_refinable(card, cfg.decoder.model if cfg.decoder is not None else None)
    if ephys:  # the extraction runs per block in the adapter, the chain per bin
        if card is not None:
            check_ephys_inputs(cfg, card)
        stages = ephys_stages(cfg, card.neurons if card is not None else ephys_inputs(cfg))
        check_graph(stages + (decoder.stages if decoder is not None else []))  # the whole graph, before the first block
        chain = live_chain([], decoder)
    else:
        chain = live_chain(stages, decoder)  # checks the whole graph before the first frame
    if cfg.decoder is not None:
        limit_blas_threads(cfg.decoder.blas_threads)
    t0 = time.perf_counter()
    if ephys:
        for s in stages:
            s.warm_up()
    if planes is not None:
        planes.warm_up()
    if chain is not None:
        chain.warm_up()
    graph = (stages if ephys else []) + ([] if chain is None else chain.stages)
    log.info("%d stages checked and warmed up in %.0f ms (%s)%s; decoder backend %s", len(graph),
             (time.perf_counter() - t0) * 1e3, " -> ".join(s.name for s in graph),
             f" after {len(planes.planes)} plane chains" if planes is not None and planes.chains else "", backend)
    if planes is not None and planes.chains is not None:
        n_neurons = planes.n
    elif not ephys and chain is None:
        n_neurons = 0  # raw frames only
    elif ephys and card is None:  # an ephys calibration block: one input per channel / unit listed
        n_neurons = int(stages[-1].out_spec.shape[0])
    else:
        n_neurons = card.neurons if card is not None else int(chain.out_spec.shape[0])
    # the decoded frame's shape; without a decoder, the stimulus images kept: the dataset layout's (docs/design.md 3.2)
    frame_shape = card.frame_shape if card is not None else CALIBRATION_FRAME_SHAPE
    # before the session folder: it may refuse the model (neurons)
    frame_bytes = None
    if not ephys:  # the largest acquisition frame (of any field) bounds what a frame socket accepts
        if tp.rois is None:
            heads = []
            raw_spec = (tuple(tp.frame_shape), np.dtype(tp.frame_dtype))
            frame_bytes = int(np.prod(raw_spec[0])) * raw_spec[1].itemsize
        else:
            heads = [stages[0]] if stages else [c.stages[0] for c in planes.chains]
            raw_spec = (tuple(heads[0].in_spec.shape), np.dtype(heads[0].in_spec.dtype))
            frame_bytes = max(int(np.prod(h.in_spec.shape)) * np.dtype(h.in_spec.dtype).itemsize for h in heads)
    raw = cfg.outputs.raw_frames
    raw_budget = None
    raw_extras = {}  # beside the chain's taps
    if raw is not None:
        if record is None:
            raise ConfigError("outputs.raw_frames: raw frames are kept in the recording; give --record DIR "
                              "(or outputs.record)")
        raw_budget = int(raw.max_gib * 2**30 // (int(np.prod(raw_spec[0])) * raw_spec[1].itemsize))
        raw_extras = {"raw": (raw_spec[0], raw_spec[1].str), "raw_saved": ((), "bool")}
        log.info("recording raw %dx%d %s frames: at most %d (%.3g GiB uncompressed), zlib level %d",
                 *raw_spec[0], raw_spec[1], raw_budget, raw.max_gib, raw.level)
    raise_descriptor_limit()  # before any socket: a connection flood must not take the recorder's files
    ingest = make_ingest(cfg, stages if ephys else [], frame_bytes)
    meta = {"config": cfg.model_dump(mode="json"), "model_card": None if card is None else card.to_dict(),
            "backend": backend, "config_file": str(Path(config).resolve()), "calibration": card is None,
            # the resolved extraction chain, so that `fit --rois` re-extracts raw frames as live would
            **({"extraction_spec": tp.chain_spec()} if not ephys else {}),
            **({"activity_order": planes.order()} if planes is not None and planes.chains is not None else {})}
    refiner = None
    if cfg.outputs.refined:  # after the ingest: assemble stops it if anything else fails to start
        try:
            refiner = make_refiner(cfg.decoder.model, card, cfg.outputs.refined_iterations, cfg.outputs.refined_frames)
        except BaseException:
            ingest.close()
            raise
    graph = assemble(ingest, chain, lambda: Publisher(cfg.outputs.publish, max_peers=cfg.outputs.max_peers,
                                                      what="the decoded stream"),
                     n_neurons=n_neurons, frame_shape=frame_shape, fps=_frame_rate(cfg), record=record, meta=meta,
                     planes=planes, triggers=lambda recorder, pub: make_triggers(cfg, frame_shape, recorder),
                     flips=lambda: make_flips(cfg), extras=raw_extras,
                     compress_level=None if raw is None else raw.level,
                     uncertainty=decoder.uncertainty if decoder is not None and cfg.outputs.uncertainty else None,
                     refiner=refiner)
    session = graph.session(lag_min=0 if card is None else card.window.lag_min,
                            extraction=ingest.chain if ephys else None, decode=card is not None,
                            max_age_s=cfg.max_age_ms / 1e3, raw_frames=raw_budget,
                            raw_shape=None if ephys else raw_spec[0],
                            placement=Placement(cfg.cpu.pipeline, cfg.cpu.priority))
    log.info("%s: %s -> %s", "live" if card is not None else "calibration block (no decoder)",
             ", ".join(cfg.source.address), graph.publisher.endpoint)
    stopper.attach(session.stop)  # a signal that came during start-up stops the loop at its first turn
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
        stats = session.stats(final=True) | {"backend": backend}
        graph.close(stats, error=error, reason=session.stop_reason)
        recorder = graph.recorder
        if recorder is not None:
            stats.update(recorded=recorder.written, records_lost=recorder.lost, record_damaged=recorder.failed
                         or recorder.deleted_reason or (recorder.gave_up[0] if recorder.gave_up else None))
    return stats
