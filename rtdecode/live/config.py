"""Typed rig configuration, loaded from YAML (`rtdecode run CONFIG.yaml`; examples in `configs/`).

    cfg = load_config("configs/openephys_ephys.yaml")   # -> RigConfig, or ConfigError

The models below are the one schema of a rig file: every key carries its type, default, allowed range
and description, and `docs/rig-file.md` is generated from them (`python -m rtdecode.live.config_docs`).
Every section forbids unknown keys and checks ranges; a ConfigError names the key path and what is
allowed, e.g. `source.protocol: 'zmq' is not one of rtframe, openephys, eventbroadcaster, scanimage_zmq`.
Relative paths (ROIs, reference, model, record, trigger targets) are relative to the folder of the
YAML file. Sockets that rtdecode binds (outputs.publish) bind to 127.0.0.1 unless the file says otherwise.

Sections: `rig` (a name); `source` (protocol: rtframe | openephys | eventbroadcaster | scanimage_zmq,
the registry rtdecode.sources.protocols; addresses; per-protocol keys, each entry's source_keys); `extraction`
(`two_photon` or `ephys`, the one the protocol needs); `decoder` (optional: model, blas_threads,
backends; without it `rtdecode run` records a calibration block); `outputs` (publish, record, max_peers, uncertainty);
`triggers` (each a name, a `rule` saying when it fires and an output kind); `stimulus` (flip times:
sender or a TTL line); `freshness` and `max_age_ms`; `session_metadata` (optional: subject,
experimenter, institution, imaging plane: for the NWB file and DANDI).
"""

from __future__ import annotations

import datetime
import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from rtdecode.decode.backends import BACKENDS, DEFAULT_PREFERENCE
from rtdecode.errors import ConfigError
from rtdecode.extract import stages as stage_registry
from rtdecode.live.config_checks import (Endpoint, Name, NonEmpty, OneOf, Port, Range, Section, config_error,
                                         endpoint, problem)
from rtdecode.sources import protocols
from rtdecode.sources.address import check_endpoint, local_host, split_endpoint  # noqa: F401 (split_endpoint: API)

TRIGGER_KINDS = ("zmq", "network_events", "serial")
RULE_KINDS = ("similarity", "luminance", "motion")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5560"
# source keys that only some protocols use (key -> the protocols): from the registry's source_keys
PROTOCOL_ONLY = protocols.keys_by_protocol()


class Heartbeat(Section):
    """Open Ephys ZMQ Interface heartbeat (REQ to the plugin's REP)."""

    port: Port | None = Field(None, description="the plugin's heartbeat port; default: the data port + 1, as the "
                                               "plugin does")
    interval_s: Annotated[float, Range(gt=0.0, lt=5.0)] = Field(
        2.0, description="seconds between heartbeats (the plugin marks a client dead after 5 s of silence)")


def _one_or_many(v):
    return [v] if isinstance(v, str) else v


MAX_RANGE = 65536  # inputs a range shorthand may expand to


def _expand_range(v: str, what: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d{1,6})\s*-\s*(\d{1,6})\s*", v)
    if m is None:
        raise problem(f"{v[:60]!r}: a {what} range is 'FIRST-LAST' with whole numbers, e.g. '0-383'")
    a, b = int(m.group(1)), int(m.group(2))
    if b < a or b - a + 1 > MAX_RANGE:
        raise problem(f"{v[:60]!r}: FIRST-LAST needs FIRST <= LAST and at most {MAX_RANGE} values")
    return a, b


def _channel_range(v):
    """'0-383' -> [0, ..., 383]; a list passes unchanged."""
    if isinstance(v, str):
        a, b = _expand_range(v, "channel")
        return list(range(a, b + 1))
    return v


def _unit_range(v):
    """'Probe:1-300' -> ['Probe:1', ..., 'Probe:300'] (sorted ids FIRST..LAST of one electrode); a list
    passes unchanged."""
    if isinstance(v, str):
        name, sep, ids = v.rpartition(":")
        if not sep or not name:
            raise problem(f"{v[:60]!r}: a units range is 'ELECTRODE:FIRST-LAST', e.g. 'Probe:1-300'")
        a, b = _expand_range(ids, "sorted id")
        return [f"{name}:{i}" for i in range(a, b + 1)]
    return v


class Source(Section):
    """Where the acquisition data comes from (one protocol of rtdecode.sources.protocols)."""

    protocol: Annotated[str, OneOf(protocols.PROTOCOLS)] = Field(
        description="how the data arrives (the source-protocol registry, rtdecode.sources.protocols)")
    address: Annotated[list[str], NonEmpty, BeforeValidator(_one_or_many)] = Field(
        description="tcp://HOST:PORT of the publisher, or a list; rtframe may list several publishers (e.g. the "
                    "ScanImage PC and the stimulus PC). They bind, rtdecode connects")
    heartbeat: Heartbeat | None = Field(None, description="the ZMQ Interface plugin's heartbeat")
    event_broadcaster: Endpoint | None = Field(
        None, description="the Event Broadcaster's address, for its TTLs and spikes beside the continuous data")
    stream: str | None = Field(
        None, description="the Open Ephys stream to read, by name (default: the first one that fits the model)")
    channels: Annotated[list[Annotated[int, Range(ge=0, le=4095)]], NonEmpty,
                        BeforeValidator(_channel_range)] | None = Field(
        None, description="the Open Ephys channels read (channel_num, from 0), in the model's input order (their "
                          "number must equal the model's neurons), or a range 'FIRST-LAST' (e.g. '0-383'); required "
                          "without a decoder (a calibration block: one input per channel)")
    stim_address: Endpoint | None = Field(
        None, description="an rtframe publisher of 'stim' messages (e.g. the stimulus PC), for protocols whose own "
                          "stream carries no stimulus")
    idle_end_s: Annotated[float, Range(gt=0.0, le=3600.0)] | None = Field(
        None, description="end the session once data has arrived and the source has then been silent this long, s "
                          "(e.g. after a replay; default: wait for the end message or --seconds)")
    group_by: Annotated[str, OneOf(("electrode", "unit"))] | None = Field(
        None, description="one decoder input per electrode or per sorted unit")
    units: Annotated[list[Name], NonEmpty, BeforeValidator(_unit_range)] | None = Field(
        None, description="the electrode / 'ELECTRODE:SORTED_ID' names in the model's input order (their number must "
                          "equal the model's neurons), or a range of sorted ids 'ELECTRODE:FIRST-LAST' (e.g. "
                          "'Probe:1-300'); required without a decoder (a calibration block)")
    channel: Annotated[int, Range(ge=1, le=64)] | None = Field(
        None, description="the one imaging channel extracted, ScanImage's numbering from 1 (default 1); frames of "
                          "other channels are counted in stats (ignored_frames) and ignored")
    planes: Annotated[list[Annotated[int, Range(ge=1, le=1024)]], NonEmpty] | None = Field(
        None, description="the planes extracted, ScanImage's zIdx from 1, increasing (default [1]); frames of other "
                          "planes are counted and ignored")
    scan_rois: Annotated[list[Annotated[int, Range(ge=1, le=1024)]], NonEmpty] | None = Field(
        None, description="multi-ROI (mesoscope) scans: the scanned ROIs extracted, the frame header's roi (the index "
                          "into ScanImage's roiData, from 1), increasing (default [1]); frames of other ROIs are "
                          "counted and ignored. Each (plane, scan ROI) is a field with its own suite2p folder; the "
                          "activity vector is plane-major, then scan ROI, then cell")

    @field_validator("address")
    @classmethod
    def _endpoints(cls, v):
        return [endpoint(a) for a in v]

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise problem(f"{sorted(u for u in set(v) if v.count(u) > 1)} listed more than once")
        return v

    @field_validator("planes")
    @classmethod
    def _planes(cls, v):
        if v is not None and any(b <= a for a, b in zip(v, v[1:])):
            raise problem(f"{v}: list each plane once, in increasing order (the order they are acquired)")
        return v

    @field_validator("scan_rois")
    @classmethod
    def _scan_rois(cls, v):
        if v is not None and any(b <= a for a, b in zip(v, v[1:])):
            raise problem(f"{v}: list each scan ROI once, in increasing order (the order they are acquired)")
        return v

    @model_validator(mode="after")
    def _protocol_fields(self):
        if not protocols.get(self.protocol).many_addresses and len(self.address) != 1:
            raise problem(f"address: {self.protocol} takes one address, got {len(self.address)}")
        only = protocols.keys_by_protocol()
        for key in type(self).model_fields:
            names = only.get(key)
            if names is not None and getattr(self, key) is not None and self.protocol not in names:
                raise problem(f"{key}: only used with protocol {' or '.join(names)}, not {self.protocol}")
        return self

    @property
    def heartbeat_port(self) -> int | None:
        """The heartbeat port of a protocol that takes `heartbeat` (openephys), else None."""
        if "heartbeat" not in protocols.get(self.protocol).source_keys:
            return None
        if self.heartbeat is not None and self.heartbeat.port is not None:
            return self.heartbeat.port
        return split_endpoint(self.address[0])[1] + 1

    @property
    def frame_channel(self) -> int:
        """The imaging channel extracted (default 1)."""
        return 1 if self.channel is None else self.channel

    @property
    def frame_planes(self) -> list[int]:
        """The planes extracted, increasing (default [1])."""
        return [1] if self.planes is None else list(self.planes)

    @property
    def frame_scan_rois(self) -> list[int]:
        """The multi-ROI scan's ROIs extracted, increasing (default [1])."""
        return [1] if self.scan_rois is None else list(self.scan_rois)

    @property
    def frame_fields(self) -> list[tuple[int, int]]:
        """(plane, scan ROI) of each field, in the activity vector's order: plane-major, then scan ROI."""
        return [(p, r) for p in self.frame_planes for r in self.frame_scan_rois]


# the keys kept from before `stages`: (stage, option) each sets, where the stages list does not
LEGACY_STAGE_KEYS = {"crop": ("register", "crop"), "downsample": ("register", "downsample"),
                     "max_shift": ("register", "max_shift"), "neuropil_r": ("traces", "r"),
                     "tau_s": ("deconvolve", "tau_s")}


def _chain_spec(value):
    try:
        stage_registry.parse_spec(value)
    except ConfigError as exc:
        raise problem(str(exc)) from None
    return value


class TwoPhoton(Section):
    """The two-photon chain, one per plane: by default register -> ROI traces - neuropil -> dF/F ->
    deconvolve; `stages` lists it explicitly, each stage with its options
    ([extraction.two_photon.stages](#extractiontwo_photonstages-the-stage-registry))."""

    rois: Path | Annotated[list[Path], NonEmpty] | None = Field(
        None, description="suite2p folder (stat.npy, iscell.npy, ops.npy), or one per plane: a list in source.planes order; "
                    "the activity vector is the planes' activities one after the other (plane, then ROI order). "
                    "Multi-ROI scans (source.scan_rois): one folder per (plane, scan ROI), plane-major: "
                    "[p1 r1, p1 r2, ..., p2 r1, p2 r2, ...], e.g. suite2p's plane0, plane1, ... in that order. Leave it out only to record the raw frames of a new field of "
                    "view's calibration block (no decoder, outputs.raw_frames and frame_shape set), then find its cells "
                    "with `rtdecode rois SESSION --out DIR`")
    frame_shape: tuple[Annotated[int, Range(ge=8, le=8192)], Annotated[int, Range(ge=8, le=8192)]] | None = Field(
        None, description="the acquisition frame's size, px (height, width); needed without rois (with them: ops.npy's "
                          "Ly, Lx)")
    reference: Path | Annotated[list[Path], NonEmpty] | None = Field(
        None, description=".npy image to register to (one per plane, or per (plane, scan ROI) as rois); default: "
                          "ops['meanImg'] of the ROI folder")
    crop: tuple[Annotated[int, Range(ge=8, le=4096)], Annotated[int, Range(ge=8, le=4096)]] | None = Field(
        None, description="the centred region used for motion estimation, px (height, width); default 320 x 320, "
                          "clipped to the frame")
    downsample: Annotated[int, Range(ge=1, le=8)] | None = Field(
        None, description="the region is binned downsample x downsample before the FFT; default 2 where it is at "
                          "least 320 px on its shorter side, else 1 (docs/latency.md)")
    max_shift: Annotated[int, Range(ge=1, le=1024)] | None = Field(
        None, description="the largest motion searched, px (default: a quarter of the crop)")
    neuropil_r: Annotated[float, Range(ge=0.0, le=1.0)] = Field(
        0.7, description="neuropil subtraction factor: F - r * Fneu")
    tau_s: Annotated[float, Range(gt=0.0, le=10.0)] = Field(
        0.7, description="the indicator's decay time, s (GCaMP6s ~0.7)")
    fps: Annotated[float, Range(gt=0.0, le=2000.0)] = Field(
        30.0, description="the frame rate, Hz (the volume rate with several planes)")
    frame_dtype: Annotated[str, OneOf(("uint16", "int16"))] = Field(
        "uint16", description="the raw frames' type (ScanImage acquires int16)")
    stages: Annotated[list, BeforeValidator(_chain_spec)] | None = Field(
        None, description="the chain's stages in order, each a name or {name: {options}}, e.g. [{register: {crop: "
                          "[256, 256]}}, traces, dff, {deconvolve: {method: oasis, lag: 3}}]; default: register, "
                          "traces, dff, deconvolve. crop, downsample, max_shift, neuropil_r and tau_s above set "
                          "their stage's option where this list does not")

    @model_validator(mode="after")
    def _spec(self):
        try:
            self.chain_spec()
        except ConfigError as exc:
            raise problem(str(exc)) from None
        return self

    def chain_spec(self) -> list[dict]:
        """The chain spec for rtdecode.extract.build_chain: `stages` (or the default chain) with the
        keys of LEGACY_STAGE_KEYS filled in; ConfigError where a key and the list both set an option."""
        entries = [(name, opts.model_dump(exclude_unset=True)) for name, opts in stage_registry.parse_spec(self.stages)]
        for key, (stage, option) in LEGACY_STAGE_KEYS.items():
            value, given = getattr(self, key), key in self.model_fields_set
            targets = [opts for name, opts in entries if name == stage]
            if given and not targets:
                raise ConfigError(f"stages: {key} is set but the list has no {stage} stage; set its option there")
            for opts in targets:
                if option in opts and given:
                    raise ConfigError(f"stages: {key} and {stage}'s {option} are both set; keep one")
                if option not in opts and value is not None:
                    opts[option] = tuple(value) if isinstance(value, (list, tuple)) else value
        return [{name: opts} for name, opts in entries]

    @property
    def rois_per_plane(self) -> list[Path]:
        """One suite2p folder per field: per plane, or per (plane, scan ROI) plane-major ([] without rois)."""
        if self.rois is None:
            return []
        return list(self.rois) if isinstance(self.rois, list) else [self.rois]

    @property
    def reference_per_plane(self) -> list[Path | None]:
        if self.reference is None:
            return [None] * len(self.rois_per_plane)
        return list(self.reference) if isinstance(self.reference, list) else [self.reference]


# the keys kept from before `stages`: (stage, option) each sets, where the stages list does not
LEGACY_EPHYS_KEYS = {"band_hz": ("bandpass", "band"), "threshold": ("detect", "k"),
                     "threshold_uv": ("detect", "threshold_uv"), "reference": ("common_reference", "method")}


def _ephys_spec(value):
    try:
        stage_registry.parse_spec(value, "ephys")
    except ConfigError as exc:
        raise problem(str(exc)) from None
    return value


class Ephys(Section):
    """The ephys chain: band-pass -> common reference -> threshold crossings -> spike counts per bin
    (openephys), or sorted spikes binned per electrode / unit (eventbroadcaster); `stages` lists it
    explicitly, each stage with its options
    ([extraction.ephys.stages](#extractionephysstages-the-ephys-stage-registry))."""

    band_hz: tuple[Annotated[float, Range(gt=0.0)], Annotated[float, Range(gt=0.0)]] | None = Field(
        (300.0, 6000.0), description="band-pass edges, Hz (low, high); null: no filter")
    threshold: Annotated[float, Range(gt=0.0, le=50.0)] = Field(
        4.5, description="detection threshold, x the channel's robust noise (negative crossings)")
    threshold_uv: Annotated[float, Range(gt=0.0, le=10000.0)] | None = Field(
        None, description="an absolute detection level, uV, instead of `threshold`")
    reference: Annotated[str, OneOf(("mean", "median"))] | None = Field(
        "mean", description="common reference over channels; null: none")
    bin_ms: Annotated[float, Range(ge=1.0, le=1000.0)] = Field(
        33.3, description="the activity bin, ms: one decoder input vector per bin")
    block_samples: Annotated[int, Range(ge=16, le=65536)] = Field(
        1024, description="the extraction's block capacity, samples: blocks are cut at bin edges and at most this long")
    stages: Annotated[list, BeforeValidator(_ephys_spec)] | None = Field(
        None, description="the chain's stages in order, each a name or {name: {options}}, e.g. [{bandpass: {band: "
                          "[300, 3000], order: 2}}, common_reference, {detect: {k: 5}}, bin]; default: bandpass, "
                          "common_reference, detect, bin (openephys), bin_units (eventbroadcaster). band_hz, "
                          "threshold, threshold_uv and reference above set their stage's option where this list "
                          "does not (reference null: no common_reference stage)")

    @field_validator("band_hz")
    @classmethod
    def _band(cls, v):
        if v is not None and not v[0] < v[1]:
            raise problem(f"low edge {v[0]} must be below the high edge {v[1]}")
        return v

    @model_validator(mode="after")
    def _spec(self):
        try:
            self.chain_spec()
        except ConfigError as exc:
            raise problem(str(exc)) from None
        return self

    def chain_spec(self, default=stage_registry.DEFAULT_EPHYS_STAGES) -> list[dict]:
        """The chain spec for rtdecode.extract.ephys_stages.build_ephys_stages: `stages` (or `default`,
        the protocol's default chain) with the keys of LEGACY_EPHYS_KEYS filled in where the chain has
        their stage (`reference: null` drops common_reference from the default chain); ConfigError
        where a key and the list both set an option, or a key is set for a stage the list lacks."""
        listed = self.stages is not None
        spec = self.stages if listed else list(default)
        entries = [(name, opts.model_dump(exclude_unset=True)) for name, opts in stage_registry.parse_spec(spec, "ephys")]
        if not listed and self.reference is None:
            entries = [(name, opts) for name, opts in entries if name != "common_reference"]
        for key, (stage, option) in LEGACY_EPHYS_KEYS.items():
            value, given = getattr(self, key), key in self.model_fields_set
            targets = [opts for name, opts in entries if name == stage]
            if listed and given and not targets and not (key == "reference" and value is None):
                raise ConfigError(f"stages: {key} is set but the list has no {stage} stage; set its option there")
            for opts in targets:
                if given and (option in opts or (key == "reference" and value is None)):
                    raise ConfigError(f"stages: {key} and {stage}'s {option} are both set; keep one")
                if option not in opts:
                    opts[option] = tuple(value) if isinstance(value, (list, tuple)) else value
        return [{name: opts} for name, opts in entries]


class Extraction(Section):
    """Exactly one of two_photon, ephys: the one the source protocol needs."""

    two_photon: TwoPhoton | None = Field(None, description="two-photon extraction")
    ephys: Ephys | None = Field(None, description="ephys extraction")

    @model_validator(mode="after")
    def _one(self):
        if (self.two_photon is None) == (self.ephys is None):
            raise problem("give exactly one of two_photon, ephys")
        return self


class Decoder(Section):
    """The model decoded live; leave the section out to record a calibration block."""

    model: Path = Field(description="a model directory written by `rtdecode fit` (then `rtdecode compile`)")
    blas_threads: Annotated[int, Range(ge=1, le=256)] = Field(
        1, description="BLAS threads of the live process: 1 keeps the per-frame mat-vec from fighting acquisition "
                       "for cores")
    backends: Annotated[list[Annotated[str, OneOf(BACKENDS)]], NonEmpty] = Field(
        list(DEFAULT_PREFERENCE), description="preference order over the backend registry "
                                              "(rtdecode.decode.backends); the first that loads runs")

    @field_validator("backends")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise problem(f"{v} lists a backend twice")
        return v


class Outputs(Section):
    """Where the decoded stream goes."""

    publish: Endpoint = Field(DEFAULT_PUBLISH, description="the rtframe PUB address of 'decoded', 'uncertainty', "
                                                            "'activity' and 'stats' (`rtdecode view` reads it); "
                                                            "tcp://*:5560 serves other PCs")
    record: Path | None = Field(None, description="a new session folder to record into (`rtdecode inspect` reads "
                                                  "it); `rtdecode run --record` overrides it")
    max_peers: Annotated[int, Range(ge=1, le=10000)] = Field(
        16, description="connections each socket rtdecode binds (publish, zmq triggers) takes; refused beyond, so "
                        "that idle peers cannot use up the file descriptors")
    raw_frames: RawFrames | None = Field(
        None, description="two-photon, one plane: also record the raw frames (e.g. a calibration block, for "
                          "`rtdecode rois`); needs a record path")
    uncertainty: bool = Field(
        True, description="publish (topic 'uncertainty', beside 'decoded') and record the per-pixel uncertainty "
                          "of each decoded frame when the model has a fold ensemble (image-prior amortized models: "
                          "the spread of its 5 fold ridges, computed after the decoded frame is out); models "
                          "without one publish none")


class RawFrames(Section):
    """Raw acquisition frames kept in the recording, in its chunks (zlib-compressed): a calibration block of a
    new field of view keeps them so that `rtdecode rois SESSION` finds its cells, with no second acquisition."""

    max_gib: Annotated[float, Range(gt=0.0, le=1024.0)] = Field(
        4.0, description="at most this many GiB of raw frames, counted uncompressed (less lands on disk); later "
                         "frames are not kept (a warning says so, `raw_saved` is false in their rows)")
    level: Annotated[int, Range(ge=1, le=9)] = Field(
        1, description="zlib compression level of the chunks: 1 fastest (the default; keeps up at 30 Hz on one "
                       "core), 9 smallest")


class TriggerRule(Section):
    """When a trigger fires: a score of each decoded frame crosses `threshold` on `consecutive`
    frames in a row (see rtdecode.outputs.triggers.rules)."""

    kind: Annotated[str, OneOf(RULE_KINDS)] = Field(
        description="the score: similarity (correlation with `target`), luminance (mean, 0-255) or motion "
                    "(mean |change| from the previous frame)")
    threshold: Annotated[float, Range(ge=-1.0, le=255.0)] = Field(description="the score's threshold")
    below: bool = Field(False, description="fire when the score is at or below the threshold instead of above")
    consecutive: Annotated[int, Range(ge=1, le=1000)] = Field(
        1, description="decoded frames in a row that must cross the threshold")
    region: tuple[int, int, int, int] | None = Field(
        None, description="y0, y1, x0, x1 in decoded-frame pixels (end exclusive); default: the whole frame")
    target: Path | None = Field(None, description=".npy image of the decoded frame's shape (similarity only)")

    @model_validator(mode="after")
    def _target(self):
        if (self.kind == "similarity") != (self.target is not None):
            raise problem("target: a .npy image is needed by 'similarity' rules and used by no other kind")
        if self.region is not None and not (0 <= self.region[0] < self.region[1] and 0 <= self.region[2] < self.region[3]):
            raise problem(f"region: expected y0 < y1 and x0 < x1, all >= 0, got {list(self.region)}")
        return self


class Trigger(Section):
    """A closed-loop output: when its `rule` fires on a decoded frame, a message or pulse goes out
    (never on a frame older than max_age_ms)."""

    name: Name = Field(description="a name for logs, stats and the recording")
    rule: TriggerRule | None = Field(None, description="when it fires (required by `rtdecode run`)")
    kind: Annotated[str, OneOf(TRIGGER_KINDS)] = Field(
        description="the output: zmq (an rtframe 'trigger' message on a PUB socket), network_events (a TTL on the "
                    "Open Ephys Network Events plugin) or serial (a pulse on a serial line, pyserial)")
    address: Name = Field(description="tcp://HOST:PORT (zmq, network_events) or a serial device")
    line: Annotated[int, Range(ge=1, le=256)] | None = Field(
        None, description="the Network Events TTL line, from 1 (network_events only, required there)")
    # at least one of the GUI's processing blocks (1024 samples at 30 kHz is 34 ms), or the on and off
    # edges can land on the same sample number
    pulse_ms: Annotated[float, Range(ge=1.0, le=10000.0)] = Field(
        50.0, description="the Network Events pulse width, ms (at least one of the GUI's processing blocks)")
    min_interval_s: Annotated[float, Range(ge=0.0, le=3600.0)] = Field(
        0.0, description="the shortest time between two firings, s")

    @model_validator(mode="after")
    def _kind(self):
        if self.kind in ("zmq", "network_events"):
            try:
                check_endpoint(self.address)
            except ConfigError as exc:
                raise problem(f"address: {exc}") from None
        if self.kind == "network_events" and self.line is None:
            raise problem("line: network_events triggers need the TTL line (1..256)")
        return self


class Ttl(Section):
    """Hardware flip times on a TTL line of the Open Ephys Event Broadcaster (rtdecode.sources.flips)."""

    address: Endpoint = Field(description="the Event Broadcaster (JSON output), e.g. tcp://192.168.1.10:5557")
    line: Annotated[int, Range(ge=1, le=256)] = Field(description="the TTL line, numbered from 1 as in the GUI")
    edges: Annotated[str, OneOf(("rising", "both"))] = Field(
        "rising", description="which edges mark a flip (both: a photodiode patch alternating each flip)")
    tolerance_ms: Annotated[float, Range(gt=0.0, le=100.0)] = Field(
        8.0, description="how far an edge may be from the expected display latency, ms (8: half a 60 Hz frame)")
    max_latency_ms: Annotated[float, Range(gt=0.0, le=1000.0)] = Field(
        100.0, description="the longest display latency looked for before one is known, ms")


class Stimulus(Section):
    """When each stimulus frame started: the stim message's own time (sender) or a TTL edge (ttl)."""

    flip_times: Annotated[str, OneOf(("sender", "ttl"))] = Field(
        "sender", description="sender: a stimulus frame starts at its stim message's clock-corrected `t`; ttl: at "
                              "its TTL edge (a photodiode or the stimulus PC's frame clock, recorded by Open Ephys)")
    ttl: Ttl | None = Field(None, description="the TTL line (flip_times ttl only)")

    @model_validator(mode="after")
    def _ttl(self):
        if self.flip_times == "ttl" and self.ttl is None:
            raise problem("ttl: flip_times ttl needs ttl: {address: tcp://HOST:PORT, line: N}")
        if self.flip_times != "ttl" and self.ttl is not None:
            raise problem(f"ttl: only used with flip_times: ttl, not {self.flip_times}")
        return self


# ISO 8601 durations (e.g. P90D, P12W, P1Y2M) and the species forms NWB and DANDI accept (as nwbinspector checks them)
ISO_DURATION = (r"P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
                r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?")
SPECIES_FORM = r"([A-Z][a-z]* [a-z]+)|(http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)"
PERSON_FORM = r"([\w\s\-\.']+),\s+([\w\s\-\.']+)"  # 'Last, First' (DANDI's name pattern)


def _age(v):
    """An ISO 8601 duration, or a range 'LOW/HIGH' or 'LOW/' (NWB's extension for an age known to a range)."""
    if not isinstance(v, str):
        raise problem(f"{v!r} is not text; give an ISO 8601 duration such as P90D (90 days) or P12W")
    parts = v.split("/")
    if len(parts) > 2 or not re.fullmatch(ISO_DURATION, parts[0]) or (
            len(parts) == 2 and parts[1] and not re.fullmatch(ISO_DURATION, parts[1])):
        raise problem(f"{v!r} is not an ISO 8601 duration; e.g. P90D (90 days), P12W, P1Y2M, or a range "
                      "P60D/P90D, or P90D/ (90 days or older)")
    return v


def _date_of_birth(v):
    """An ISO 8601 date or date-time (kept as written; a date is midnight UTC in the NWB file)."""
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    try:
        datetime.datetime.fromisoformat(v)
    except (TypeError, ValueError):
        raise problem(f"{v!r} is not an ISO 8601 date; e.g. 2026-09-01 or 2026-09-01T08:00:00+01:00") from None
    return v


class Subject(Section):
    """The animal (NWB Subject; DANDI requires subject_id, species, sex and an age or date of birth)."""

    subject_id: Name | None = Field(None, description="the animal's id in the lab (no '/': DANDI builds paths from "
                                                      "it); required by DANDI")
    species: str | None = Field(None, description="Latin binomial, e.g. Mus musculus, or an NCBI taxonomy IRI "
                                                  "(http://purl.obolibrary.org/obo/NCBITaxon_10090)")
    sex: Annotated[str, OneOf(("M", "F", "U", "O"))] | None = Field(
        None, description="M, F, U (unknown) or O (other)")
    age: Annotated[str, BeforeValidator(_age)] | None = Field(
        None, description="ISO 8601 duration at the session, e.g. P90D; a range P60D/P90D or P90D/ if not known "
                          "exactly (give age or date_of_birth)")
    date_of_birth: Annotated[str, BeforeValidator(_date_of_birth)] | None = Field(
        None, description="ISO 8601 date or date-time, e.g. 2026-09-01 (a date: midnight UTC)")
    strain: Name | None = Field(None, description="e.g. C57BL/6J, or a transgenic line such as Ai148 x Cux2-CreERT2")
    genotype: Name | None = Field(None, description="the genetic modification, if any")
    description: Name | None = Field(None, description="anything else about the animal (e.g. surgery, window)")

    @field_validator("subject_id")
    @classmethod
    def _no_slash(cls, v):
        if v is not None and "/" in v:
            raise problem(f"{v!r} contains '/'; DANDI builds file paths from it: use '-' or '_'")
        return v

    @field_validator("species")
    @classmethod
    def _species(cls, v):
        if v is not None and not re.fullmatch(SPECIES_FORM, v):
            raise problem(f"{v!r}: give the Latin binomial (e.g. Mus musculus, Rattus norvegicus) or an NCBI "
                          "taxonomy IRI (http://purl.obolibrary.org/obo/NCBITaxon_10090)")
        return v


class ImagingPlaneInfo(Section):
    """Where and what the two-photon microscope images (NWB ImagingPlane, OpticalChannel)."""

    location: Name | None = Field(None, description="the brain area, as an Allen Mouse Brain CCF name or acronym "
                                                    "(e.g. VISp, or Primary visual area)")
    indicator: Name | None = Field(None, description="the calcium indicator, e.g. GCaMP6s, jGCaMP8m")
    excitation_nm: Annotated[float, Range(ge=200.0, le=2000.0)] | None = Field(
        None, description="the excitation wavelength, nm (e.g. 920)")
    emission_nm: Annotated[float, Range(ge=200.0, le=2000.0)] | None = Field(
        None, description="the emission filter's centre wavelength, nm (e.g. 510)")


class SessionMetadata(Section):
    """Who recorded what, for the NWB file (`rtdecode export --nwb`) and DANDI; recorded into
    session.json with the rig file. `rtdecode export` options override these keys."""

    subject: Subject | None = Field(None, description="the animal")
    experimenter: Annotated[list[str], NonEmpty, BeforeValidator(_one_or_many)] | None = Field(
        None, description="'Last, First' or a list of them")
    institution: Name | None = Field(None, description="e.g. University College London")
    lab: Name | None = Field(None, description="the lab's name")
    experiment_description: Name | None = Field(None, description="what the experiment is about, a sentence or two")
    keywords: Annotated[list[Name], NonEmpty] | None = Field(
        None, description="search terms added to rtdecode's own (closed-loop, neural decoding, ...)")
    imaging_plane: ImagingPlaneInfo | None = Field(None, description="two-photon: the imaged area and indicator")

    @field_validator("experimenter")
    @classmethod
    def _people(cls, v):
        for name in v or []:
            if not re.fullmatch(PERSON_FORM, name):
                raise problem(f"{name!r}: write 'Last, First' (e.g. 'Doe, Jane'), the form NWB and DANDI read")
        return v


def parse_session_metadata(data, source: str = "session_metadata") -> SessionMetadata:
    """A SessionMetadata from a dict (the rig file's section, or `rtdecode export` options);
    ConfigError names the key and what is allowed."""
    try:
        return SessionMetadata.model_validate(data or {})
    except ValidationError as exc:
        raise config_error(exc, source) from None


def resolve_session_metadata(session: str | Path, overrides: dict | None = None) -> dict:
    """The metadata `rtdecode export` writes: the rig file's `session_metadata` as recorded in the
    session's session.json, each key overridden by `overrides` (the export options; the subject and
    the imaging plane field by field), checked by SessionMetadata as a whole. ConfigError names
    the key and what is allowed."""
    from rtdecode.offline.nwb_export import merge_metadata, recorded_metadata

    merged = merge_metadata(recorded_metadata(session), overrides)
    return parse_session_metadata(merged, "session metadata (the rig file's session_metadata recorded in "
                                          "session.json, then the export options)").model_dump(exclude_none=True)


class Cpu(Section):
    """Where and how the live loop runs (rtdecode.live.cpu; measured in docs/latency.md)."""

    pipeline: Annotated[int, Range(ge=0, le=4095)] | None = Field(
        None, description="pin the live loop to this CPU (default: not pinned; pinning alone did not lower the "
                          "latency on a 2-core PC, docs/latency.md)")
    priority: Annotated[int, Range(ge=1, le=99)] | None = Field(
        None, description="run the live loop and ZeroMQ's I/O threads under SCHED_FIFO at this real-time priority "
                          "(needs root or an rtprio limit; refused: a warning and normal scheduling), so that other "
                          "programs cannot delay a frame; default: normal scheduling")


class RigConfig(Section):
    """A rig file: one YAML mapping of these sections."""

    rig: Name = Field("rig", description="a name for logs and session files")
    source: Source = Field(description="where the data comes from")
    extraction: Extraction = Field(description="how activity is extracted")
    decoder: Decoder | None = Field(None, description="the live model; none: a calibration block, "
                                                      "recorded (needs a record path), activity published, no "
                                                      "triggers")
    outputs: Outputs = Field(Outputs(), description="publish and record")
    triggers: list[Trigger] = Field([], description="closed-loop outputs (may be empty)")
    stimulus: Stimulus = Field(Stimulus(), description="when each stimulus frame started")
    freshness: Annotated[str, OneOf(("every_frame", "latest"))] = Field(
        "every_frame", description="every_frame: process every frame (recording grade; a backlog shows in the "
                                   "latency); latest: closed loop, drain the socket and process only the newest "
                                   "frame (skipped ones counted)")
    max_age_ms: Annotated[float, Range(gt=0.0, le=60000.0)] = Field(
        50.0, description="no trigger fires on a frame older than this since its acquisition, ms (suppressed ones "
                          "are counted and recorded)")
    cpu: Cpu = Field(Cpu(), description="where and how the live loop runs (CPU, real-time priority)")
    session_metadata: SessionMetadata | None = Field(
        None, description="the subject, experimenter, institution and imaging plane, for NWB / DANDI (recorded "
                          "into session.json; `rtdecode export` options override them)")

    @model_validator(mode="after")
    def _consistent(self):
        want = protocols.get(self.source.protocol).modality
        if getattr(self.extraction, want) is None:
            raise problem(f"extraction: protocol {self.source.protocol} needs extraction.{want}")
        if self.decoder is None and want != "two_photon":
            key = protocols.get(self.source.protocol).inputs_key
            if key is None or getattr(self.source, key) is None:
                raise problem(f"source.{key}: a calibration block (no decoder) with protocol {self.source.protocol} "
                               f"needs source.{key}: the inputs recorded, in order (no model gives them)")
        if self.decoder is None and self.triggers:
            raise problem("triggers: a session without a decoder (a calibration block) cannot trigger; "
                           "add decoder.model or remove the triggers")
        tp = self.extraction.two_photon
        if self.outputs.raw_frames is not None:
            if tp is None or want != "two_photon":
                raise problem("outputs.raw_frames: raw frames are two-photon frames; remove it for this protocol")
            if len(self.source.frame_fields) != 1:
                raise problem(f"outputs.raw_frames: one field (one plane, one scan ROI) only, got "
                               f"{len(self.source.frame_fields)} (source.planes x source.scan_rois)")
        if tp is not None and want == "two_photon" and tp.rois is None:
            if self.decoder is not None:
                raise problem("extraction.two_photon.rois: required with a decoder (the model reads these ROIs' "
                               "activity); find them with `rtdecode rois` on a calibration block")
            if self.outputs.raw_frames is None or tp.frame_shape is None:
                raise problem("extraction.two_photon.rois: without ROIs the session only keeps raw frames: set "
                               "outputs.raw_frames and extraction.two_photon.frame_shape, or give the ROIs")
        if tp is not None and want == "two_photon":
            planes, scan_rois = self.source.frame_planes, self.source.frame_scan_rois
            want = len(planes) * len(scan_rois)
            for key, given in (("rois", tp.rois), ("reference", tp.reference)):
                count = len(given) if isinstance(given, list) else 1
                if given is None or count == want:
                    continue
                what = f"{'suite2p folder' if key == 'rois' else 'image'}{'s' if want > 1 else ''}"
                if self.source.scan_rois is None:
                    raise problem(f"extraction.two_photon.{key}: source.planes lists {len(planes)} plane(s) "
                                   f"{planes}, so give {want} {what} (a list in plane order), got {count}")
                raise problem(f"extraction.two_photon.{key}: source.planes {planes} x source.scan_rois {scan_rois} "
                               f"are {want} fields, so give {want} {what} (a list, plane-major: plane "
                               f"{planes[0]} ROI {scan_rois[0]}, plane {planes[0]} ROI "
                               f"{scan_rois[min(1, len(scan_rois) - 1)]}, ...), got {count}")
        # ports on one host must not collide (Open Ephys plugins default to the same ones)
        used: dict[tuple[str, int], str] = {}

        def claim(endpoint: str, what: str, port: int | None = None):
            host, p = split_endpoint(endpoint)
            key = (local_host(host), p if port is None else port)
            if key in used:
                raise problem(f"{what}: port {key[1]} on {key[0]} is already used by {used[key]}")
            used[key] = what

        if not protocols.get(self.source.protocol).many_addresses:
            claim(self.source.address[0], "source.address")
        if self.source.heartbeat_port is not None:
            claim(self.source.address[0], "source.heartbeat.port", self.source.heartbeat_port)
        if self.source.event_broadcaster:
            claim(self.source.event_broadcaster, "source.event_broadcaster")
        if self.source.stim_address:
            claim(self.source.stim_address, "source.stim_address")
        for i, t in enumerate(self.triggers):
            if t.kind == "network_events":
                claim(t.address, f"triggers.{i}.address")
        return self

    def resolve_paths(self, base: Path) -> RigConfig:
        """A copy whose relative paths are relative to `base` (the YAML file's folder)."""
        def fix(p):
            return p if p is None or Path(p).is_absolute() else Path(os.path.normpath(Path(base) / p))

        def fix_all(p):
            return [fix(q) for q in p] if isinstance(p, list) else fix(p)

        ex = self.extraction
        if ex.two_photon is not None:
            ex = ex.model_copy(update={"two_photon": ex.two_photon.model_copy(
                update={"rois": fix_all(ex.two_photon.rois), "reference": fix_all(ex.two_photon.reference)})})
        triggers = [t if t.rule is None or t.rule.target is None else t.model_copy(
            update={"rule": t.rule.model_copy(update={"target": fix(t.rule.target)})}) for t in self.triggers]
        return self.model_copy(update={
            "triggers": triggers,
            "extraction": ex,
            "decoder": None if self.decoder is None else self.decoder.model_copy(update={"model": fix(self.decoder.model)}),
            "outputs": self.outputs.model_copy(update={"record": fix(self.outputs.record)})})


def parse_config(data, source: str = "", base: Path | None = None) -> RigConfig:
    """A RigConfig from a dict (as YAML gives it); ConfigError names the key and what is allowed."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source or 'config'}: the top level must be a mapping of sections "
                          f"(source, extraction, decoder, outputs, triggers), got {type(data).__name__}")
    try:
        cfg = RigConfig.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source) from None
    return cfg.resolve_paths(base) if base is not None else cfg


MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 100_000  # YAML nodes after expanding aliases (an alias bomb expands to billions)
MAX_CONFIG_DEPTH = 50


def _expanded_nodes(node, memo: dict, depth: int = 0) -> int:
    """Nodes of the YAML graph with every alias expanded (memoized: fast even for a bomb)."""
    if depth > MAX_CONFIG_DEPTH:
        raise ConfigError(f"nested more than {MAX_CONFIG_DEPTH} levels deep")
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle counts once here; the constructor refuses it later
    n = 1
    if isinstance(node.value, list):
        for item in node.value:
            for sub in (item if isinstance(item, tuple) else (item,)):
                n += _expanded_nodes(sub, memo, depth + 1)
    memo[key] = n
    return n


def load_config(path) -> RigConfig:
    """Read and check a rig configuration YAML file; ConfigError says what is wrong and where, in
    one line, quickly: a file that is not UTF-8, over MAX_CONFIG_BYTES, nested too deep, or whose
    aliases expand to more than MAX_CONFIG_NODES nodes is refused before it is built."""
    import yaml

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {len(raw)} bytes; a rig file is at most {MAX_CONFIG_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the rig file as UTF-8") from None
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # reads the stream: may raise (control characters)
        node = loader.get_single_node()
        if node is not None:
            n = _expanded_nodes(node, {})
            if n > MAX_CONFIG_NODES:
                raise ConfigError(f"{path}: its YAML aliases expand to {n:.3g} nodes (limit {MAX_CONFIG_NODES}); "
                                  "is it an alias bomb? write the values out")
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = str(getattr(exc, "problem", None) or exc).splitlines()[0][:200]
        raise ConfigError(f"{path}:{where} not valid YAML ({problem})") from None
    except RecursionError:
        raise ConfigError(f"{path}: nested too deep to be a rig file") from None
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(str(path)) else f"{path}: {exc}") from None
    finally:
        if loader is not None:
            loader.dispose()
    return parse_config(data, str(path), base=path.resolve().parent)
