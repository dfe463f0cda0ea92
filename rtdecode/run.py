"""`rtdecode run CONFIG`: a live session on a rig, from a typed YAML rig file (rtdecode.config).

Builds the stage graph (extraction -> activity ring -> decoder backend), checks it, warms every
stage, then runs the live loop until the source ends, `--seconds` pass or Ctrl-C; records the
session when asked. The decoder runs on the first backend of `decoder.backends` that loads here
('numpy' is the model's own reference implementation).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from rtdecode import decode
from rtdecode.config import RigConfig, load_config
from rtdecode.decode import model as model_dir
from rtdecode.errors import ConfigError
from rtdecode.ingest import Ingest
from rtdecode.live import LiveSession
from rtdecode.publish import Publisher
from rtdecode.record import Recorder
from rtdecode.ring import ActivityRing
from rtdecode.stage import Chain

log = logging.getLogger(__name__)


def decoder_stage(cfg: RigConfig):
    """(card, stage, fill, backend name): the first backend of the preference list that loads."""
    card, arrays = model_dir.load(cfg.decoder.model)
    fill = arrays["act_mean"] if "act_mean" in arrays else np.zeros(card["neurons"], np.float32)
    compiled = [b for b in cfg.decoder.backends if b != "numpy"]
    if compiled:
        from rtdecode.backends import BackendStage, BackendUnavailable, choose

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
    tp = cfg.extraction.two_photon
    if cfg.source.protocol != "rtframe" or tp is None:
        raise ConfigError(f"source.protocol {cfg.source.protocol} with "
                          f"{'two_photon' if tp else 'ephys'} extraction: 'rtdecode run' drives rtframe two-photon "
                          "sources so far; ephys sessions are not wired into the live loop yet")
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


def run_session(config: str | Path, record: str | Path | None = None, seconds: float | None = None) -> dict:
    """Run a live session; returns its stats (also in the session's end.json when recording)."""
    cfg = load_config(config)
    if cfg.triggers:
        raise ConfigError("triggers: rules are set up in Python for now (rtdecode.triggers); "
                          "remove the 'triggers' section from the rig file to run it")
    stages = extraction_stages(cfg)
    card, dec_stage, fill, backend = decoder_stage(cfg)
    ring = ActivityRing(card["neurons"], card["window"]["bins"], fill=fill)
    chain = Chain(stages + [ring, dec_stage])  # checks the whole graph before the first frame
    t0 = time.perf_counter()
    chain.warm_up()
    log.info("stages warmed up in %.0f ms; decoder backend %s", (time.perf_counter() - t0) * 1e3, backend)
    record = record if record is not None else cfg.outputs.record
    recorder = None
    if record is not None:
        recorder = Recorder(record, card["neurons"], tuple(card["frame_shape"]),
                            meta={"config": cfg.model_dump(mode="json"), "model_card": card, "backend": backend})
    ingest = Ingest(cfg.source.address)
    pub = Publisher(cfg.outputs.publish)
    session = LiveSession(ingest, chain, pub, lag_min=card["window"]["lag_min"], recorder=recorder)
    log.info("live: %s -> %s", ", ".join(cfg.source.address), pub.endpoint)
    try:
        session.run(seconds=seconds, idle_timeout_s=float("inf") if seconds is None else seconds)
    except KeyboardInterrupt:
        log.info("stopped by the user")
    finally:
        stats = session.stats() | {"backend": backend}
        if recorder is not None:
            recorder.close(stats)
        ingest.close()
        pub.close()
    return stats
