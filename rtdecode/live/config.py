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
backends; without it `rtdecode run` records a calibration block); `outputs` (publish, record, max_peers, uncertainty,
refined);
`triggers` (each a name, a `rule` saying when it fires and an output kind); `stimulus` (flip times:
sender or a TTL line); `freshness` and `max_age_ms`; `session_metadata` (optional: subject,
experimenter, institution, imaging plane: for the NWB file and DANDI).

This module holds `source`, `cpu`, the whole file (`RigConfig`, its cross-section checks) and the
loaders; the other sections' models are in config_extraction.py, config_outputs.py (decoder,
outputs, triggers, stimulus) and config_metadata.py, re-exported here (import them from this module).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationError, field_validator, model_validator

from rtdecode.errors import ConfigError
from rtdecode.live.config_checks import (Endpoint, Name, NonEmpty, OneOf, Port, Range, Section, config_error,
                                         endpoint, one_or_many, problem)
# the sections in modules of their own (config_extraction, config_outputs, config_metadata), re-exported:
# import them from this module
from rtdecode.live.config_extraction import (LEGACY_EPHYS_KEYS, LEGACY_STAGE_KEYS, Ephys,
                                             Extraction, TwoPhoton)
from rtdecode.live.config_metadata import (ISO_DURATION, PERSON_FORM, SPECIES_FORM,
                                           ImagingPlaneInfo, SessionMetadata, Subject, parse_session_metadata,
                                           resolve_session_metadata)
from rtdecode.live.config_outputs import (DEFAULT_PUBLISH, RULE_KINDS, TRIGGER_KINDS, Decoder,
                                          Outputs, RawFrames, Stimulus, Trigger, TriggerRule, Ttl)
from rtdecode.sources import protocols
from rtdecode.sources.address import local_host, split_endpoint  # split_endpoint: API (rtdecode.live.ephys)

# source keys that only some protocols use (key -> the protocols): from the registry's source_keys
PROTOCOL_ONLY = protocols.keys_by_protocol()


class Heartbeat(Section):
    """Open Ephys ZMQ Interface heartbeat (REQ to the plugin's REP)."""

    port: Port | None = Field(None, description="the plugin's heartbeat port; default: the data port + 1, as the "
                                               "plugin does")
    interval_s: Annotated[float, Range(gt=0.0, lt=5.0)] = Field(
        2.0, description="seconds between heartbeats (the plugin marks a client dead after 5 s of silence)")


_one_or_many = one_or_many  # the name config_docs recognises


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


__all__ = [  # this module's API: its own models and loaders, and the sections it re-exports
    "DEFAULT_PUBLISH", "ISO_DURATION", "LEGACY_EPHYS_KEYS", "LEGACY_STAGE_KEYS", "MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH",
    "MAX_CONFIG_NODES", "PERSON_FORM", "PROTOCOL_ONLY", "RULE_KINDS", "SPECIES_FORM", "TRIGGER_KINDS", "Cpu", "Decoder",
    "Ephys", "Extraction", "Heartbeat", "ImagingPlaneInfo", "Outputs", "RawFrames", "RigConfig", "SessionMetadata",
    "Source", "Stimulus", "Subject", "Trigger", "TriggerRule", "TwoPhoton", "Ttl", "load_config", "parse_config",
    "parse_session_metadata", "resolve_session_metadata", "split_endpoint",
]
