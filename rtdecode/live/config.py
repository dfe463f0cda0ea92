"""Typed rig configuration, loaded from YAML (`rtdecode run CONFIG.yaml`; examples in `configs/`).

    cfg = load_config("configs/openephys_ephys.yaml")   # -> RigConfig, or ConfigError

Every section forbids unknown keys and checks ranges; a ConfigError names the key path and what is
allowed, e.g. `source.protocol: 'zmq' is not one of rtframe, openephys, eventbroadcaster`.
Relative paths (ROIs, model, record) are relative to the folder of the YAML file. Sockets that
rtdecode binds (outputs.publish) bind to 127.0.0.1 unless the file says otherwise.

Sections:
- source: protocol (rtframe | openephys | eventbroadcaster), address (one or a list; rtframe may
  list several publishers, e.g. ScanImage and the stimulus PC), heartbeat (openephys only: port,
  default data port + 1, and interval_s), event_broadcaster (openephys: optional address of the
  Event Broadcaster for TTLs / spikes), stream and channels (which Open Ephys stream and channels),
  stim_address (openephys / eventbroadcaster: an rtframe publisher of 'stim' messages, e.g. the
  stimulus PC, passed through to the live loop), idle_end_s (end the session once the source has
  been silent this long, e.g. after a replay; default: wait), group_by (eventbroadcaster: electrode
  or unit) and units (eventbroadcaster: the electrode / "ELECTRODE:SORTED_ID" names in the model's
  input order; their number must equal the model's neurons).
- extraction: two_photon (rois, reference, crop, max_shift, neuropil_r, tau_s, fps) or ephys
  (band_hz, threshold, threshold_uv, reference, bin_ms) — the one that matches the protocol.
- decoder: model (directory), backends (preference list of tensorrt, onnxruntime, torch, numpy).
- outputs: publish (default tcp://127.0.0.1:5560), record (session file path, optional).
- triggers: list (may be empty) of {name, kind (zmq | network_events | serial), address, line,
  min_interval_s}.
- freshness: every_frame (default: process every frame, recording grade) or latest (closed loop:
  process only the newest frame queued, count the skipped ones); max_age_ms (default 50): no trigger
  fires on a frame older than this since its acquisition (suppressed ones are counted and recorded).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rtdecode.errors import ConfigError

PROTOCOLS = ("rtframe", "openephys", "eventbroadcaster")
BACKENDS = ("tensorrt", "onnxruntime", "torch", "numpy")
TRIGGER_KINDS = ("zmq", "network_events", "serial")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5560"

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.*-]+):(?P<port>\d+)$")

Port = Annotated[int, Field(ge=1, le=65535)]


def _check_endpoint(value: str) -> str:
    m = _TCP.match(value) if isinstance(value, str) else None
    if m is None:
        raise ValueError(f"{value!r} is not a ZeroMQ address of the form tcp://HOST:PORT (e.g. tcp://127.0.0.1:5556)")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port {port} is not in 1..65535")
    return value


def split_endpoint(value: str) -> tuple[str, int]:
    m = _TCP.match(value)
    return m.group("host"), int(m.group("port"))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Heartbeat(_Model):
    """Open Ephys ZMQ Interface heartbeat (REQ to the plugin's REP)."""

    port: Port | None = None  # default: data port + 1, as the plugin does
    interval_s: float = Field(2.0, gt=0.0, lt=5.0)  # the plugin marks a client dead after 5 s of silence


class Source(_Model):
    protocol: Literal["rtframe", "openephys", "eventbroadcaster"]
    address: list[str] = Field(min_length=1)
    heartbeat: Heartbeat | None = None
    event_broadcaster: str | None = None
    stream: str | None = None
    channels: list[Annotated[int, Field(ge=0, le=4095)]] | None = Field(None, min_length=1)
    stim_address: str | None = None  # openephys / eventbroadcaster: rtframe publisher of 'stim' messages
    idle_end_s: float | None = Field(None, gt=0.0, le=3600.0)  # end when the source is silent this long
    group_by: Literal["electrode", "unit"] | None = None  # eventbroadcaster: one input per electrode or unit
    units: list[Annotated[str, Field(min_length=1)]] | None = Field(None, min_length=1)  # eventbroadcaster

    @field_validator("address", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @field_validator("address")
    @classmethod
    def _endpoints(cls, v):
        return [_check_endpoint(a) for a in v]

    @field_validator("event_broadcaster", "stim_address")
    @classmethod
    def _eb(cls, v):
        return None if v is None else _check_endpoint(v)

    @field_validator("units")
    @classmethod
    def _units(cls, v):
        if v is not None and len(set(v)) != len(v):
            raise ValueError(f"{sorted(u for u in set(v) if v.count(u) > 1)} listed more than once")
        return v

    @model_validator(mode="after")
    def _protocol_fields(self):
        if self.protocol != "rtframe" and len(self.address) != 1:
            raise ValueError(f"address: {self.protocol} takes one address, got {len(self.address)}")
        only = {"heartbeat": ("openephys",), "event_broadcaster": ("openephys",), "channels": ("openephys",),
                "stream": ("openephys", "eventbroadcaster"), "stim_address": ("openephys", "eventbroadcaster"),
                "idle_end_s": ("openephys", "eventbroadcaster"), "group_by": ("eventbroadcaster",),
                "units": ("eventbroadcaster",)}
        for key, protocols in only.items():
            if getattr(self, key) is not None and self.protocol not in protocols:
                raise ValueError(f"{key}: only used with protocol {' or '.join(protocols)}, not {self.protocol}")
        return self

    @property
    def heartbeat_port(self) -> int | None:
        if self.protocol != "openephys":
            return None
        if self.heartbeat is not None and self.heartbeat.port is not None:
            return self.heartbeat.port
        return split_endpoint(self.address[0])[1] + 1


class TwoPhoton(_Model):
    rois: Path  # suite2p folder (stat.npy, iscell.npy, ops.npy)
    reference: Path | None = None  # .npy image; default: ops['meanImg'] of the ROI folder
    crop: tuple[Annotated[int, Field(ge=8, le=4096)], Annotated[int, Field(ge=8, le=4096)]] = (256, 256)
    max_shift: Annotated[int, Field(ge=1, le=1024)] | None = None
    neuropil_r: float = Field(0.7, ge=0.0, le=1.0)
    tau_s: float = Field(0.7, gt=0.0, le=10.0)  # indicator decay time
    fps: float = Field(30.0, gt=0.0, le=2000.0)
    frame_dtype: Literal["uint16", "int16"] = "uint16"  # ScanImage acquires int16


class Ephys(_Model):
    band_hz: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] | None = (300.0, 6000.0)
    threshold: float = Field(4.5, gt=0.0, le=50.0)  # x robust noise (negative crossings)
    threshold_uv: float | None = Field(None, gt=0.0, le=10000.0)  # absolute level instead
    reference: Literal["mean", "median"] | None = "mean"
    bin_ms: float = Field(33.3, ge=1.0, le=1000.0)

    @field_validator("band_hz")
    @classmethod
    def _band(cls, v):
        if v is not None and not v[0] < v[1]:
            raise ValueError(f"low edge {v[0]} must be below the high edge {v[1]}")
        return v


class Extraction(_Model):
    two_photon: TwoPhoton | None = None
    ephys: Ephys | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.two_photon is None) == (self.ephys is None):
            raise ValueError("give exactly one of two_photon, ephys")
        return self


class Decoder(_Model):
    model: Path
    # BLAS threads of the live process: 1 keeps the per-frame mat-vec from fighting acquisition for cores
    blas_threads: int = Field(1, ge=1, le=256)
    backends: list[Literal["tensorrt", "onnxruntime", "torch", "numpy"]] = Field(
        default_factory=lambda: ["tensorrt", "onnxruntime", "torch"], min_length=1)

    @field_validator("backends")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError(f"{v} lists a backend twice")
        return v


class Outputs(_Model):
    publish: str = DEFAULT_PUBLISH
    record: Path | None = None

    @field_validator("publish")
    @classmethod
    def _pub(cls, v):
        return _check_endpoint(v)


class TriggerRule(_Model):
    """When a trigger fires: a score of each decoded frame crosses `threshold` on `consecutive`
    frames in a row (see rtdecode.outputs.triggers.rules)."""

    kind: Literal["similarity", "luminance", "motion"]  # correlation with `target`; mean 0-255; mean |change|
    threshold: float = Field(ge=-1.0, le=255.0)
    below: bool = False  # fire when the score is at or below the threshold instead
    consecutive: int = Field(1, ge=1, le=1000)
    region: tuple[int, int, int, int] | None = None  # y0, y1, x0, x1 in decoded-frame pixels (end exclusive)
    target: Path | None = None  # .npy image of the decoded frame's shape (similarity only)

    @model_validator(mode="after")
    def _target(self):
        if (self.kind == "similarity") != (self.target is not None):
            raise ValueError("target: a .npy image is needed by 'similarity' rules and used by no other kind")
        if self.region is not None and not (0 <= self.region[0] < self.region[1] and 0 <= self.region[2] < self.region[3]):
            raise ValueError(f"region: expected y0 < y1 and x0 < x1, all >= 0, got {list(self.region)}")
        return self


class Trigger(_Model):
    name: str = Field(min_length=1)
    rule: TriggerRule | None = None  # required by `rtdecode run`
    kind: Literal["zmq", "network_events", "serial"]
    address: str = Field(min_length=1)  # tcp://HOST:PORT (zmq, network_events) or a serial device
    line: Annotated[int, Field(ge=1, le=256)] | None = None  # Network Events TTL line (1-based)
    min_interval_s: float = Field(0.0, ge=0.0, le=3600.0)

    @model_validator(mode="after")
    def _kind(self):
        if self.kind in ("zmq", "network_events"):
            _check_endpoint(self.address)
        if self.kind == "network_events" and self.line is None:
            raise ValueError("line: network_events triggers need the TTL line (1..256)")
        return self


class RigConfig(_Model):
    rig: str = Field("rig", min_length=1)  # a name for logs and session files
    source: Source
    extraction: Extraction
    decoder: Decoder
    outputs: Outputs = Outputs()
    triggers: list[Trigger] = Field(default_factory=list)
    # every_frame: process every frame (recording grade; a backlog shows in the latency);
    # latest: closed loop, drain the socket and process only the newest frame (skipped ones counted)
    freshness: Literal["every_frame", "latest"] = "every_frame"
    max_age_ms: float = Field(50.0, gt=0.0, le=60000.0)  # no trigger on a frame older than this since acquisition

    @model_validator(mode="after")
    def _consistent(self):
        want = "two_photon" if self.source.protocol == "rtframe" else "ephys"
        if getattr(self.extraction, want) is None:
            raise ValueError(f"extraction: protocol {self.source.protocol} needs extraction.{want}")
        # ports on one host must not collide (Open Ephys plugins default to the same ones)
        used: dict[tuple[str, int], str] = {}

        def claim(endpoint: str, what: str, port: int | None = None):
            host, p = split_endpoint(endpoint)
            host = "127.0.0.1" if host in ("localhost", "*", "0.0.0.0") else host
            key = (host, p if port is None else port)
            if key in used:
                raise ValueError(f"{what}: port {key[1]} on {key[0]} is already used by {used[key]}")
            used[key] = what

        if self.source.protocol == "openephys":
            claim(self.source.address[0], "source.address")
            claim(self.source.address[0], "source.heartbeat.port", self.source.heartbeat_port)
            if self.source.event_broadcaster:
                claim(self.source.event_broadcaster, "source.event_broadcaster")
        elif self.source.protocol == "eventbroadcaster":
            claim(self.source.address[0], "source.address")
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

        ex = self.extraction
        if ex.two_photon is not None:
            ex = ex.model_copy(update={"two_photon": ex.two_photon.model_copy(
                update={"rois": fix(ex.two_photon.rois), "reference": fix(ex.two_photon.reference)})})
        triggers = [t if t.rule is None or t.rule.target is None else t.model_copy(
            update={"rule": t.rule.model_copy(update={"target": fix(t.rule.target)})}) for t in self.triggers]
        return self.model_copy(update={
            "triggers": triggers,
            "extraction": ex,
            "decoder": self.decoder.model_copy(update={"model": fix(self.decoder.model)}),
            "outputs": self.outputs.model_copy(update={"record": fix(self.outputs.record)})})


# ---------------------------------------------------------------- errors a lab user can act on

def _field_at(model: type[BaseModel], loc: tuple):
    """(model class holding the last key, its FieldInfo) for a pydantic error location, or (None, None)."""
    cls, info = model, None
    for part in loc:
        if isinstance(part, int):
            continue
        if cls is None or not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            return None, None
        if part not in cls.model_fields:
            return cls, None
        info = cls.model_fields[part]
        owner = cls
        cls = _inner_model(info.annotation)
    return owner if info is not None else None, info


def _inner_model(annotation):
    """The BaseModel inside Optional[...] / list[...] / tuple[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, list, tuple) or get_args(annotation):
        for a in get_args(annotation):
            m = _inner_model(a)
            if m is not None:
                return m
    return None


def _constraints(metadata) -> dict:
    out = {}
    for m in metadata or []:
        for k in ("ge", "gt", "le", "lt"):
            if getattr(m, k, None) is not None:
                out[k] = getattr(m, k)
        out.update(_constraints(getattr(m, "metadata", None)))  # a FieldInfo inside Annotated
    return out


def _constraints_in(annotation) -> dict:
    """Range constraints of the first Annotated[...] inside Optional / list / tuple."""
    meta = getattr(annotation, "__metadata__", None)
    if meta:
        return _constraints(meta)
    for a in get_args(annotation):
        found = _constraints_in(a)
        if found:
            return found
    return {}


def _bounds(constraints: dict) -> str:
    lo = constraints.get("ge", constraints.get("gt"))
    hi = constraints.get("le", constraints.get("lt"))
    left = "[" if "ge" in constraints else "("
    right = "]" if "le" in constraints else ")"
    if lo is not None and hi is not None:
        return f"{left}{lo:g}, {hi:g}{right}"
    if lo is not None:
        return f"{'>=' if 'ge' in constraints else '>'} {lo:g}"
    return f"{'<=' if 'le' in constraints else '<'} {hi:g}"


def _path(loc) -> str:
    return ".".join(str(p) for p in loc if p not in ("function-after[_kind()]",))


def _message(err: dict) -> str:
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))  # drop union/function tags
    where = _path(loc) or "(top level)"
    typ, ctx, value = err["type"], err.get("ctx", {}) or {}, err.get("input")
    if typ == "literal_error":
        allowed = re.sub(r"'", "", ctx.get("expected", "")).replace(" or ", ", ")
        return f"{where}: {value!r} is not one of {allowed}"
    if typ == "extra_forbidden":
        owner = _field_at(RigConfig, loc[:-1])[1] if len(loc) > 1 else None
        cls = _inner_model(owner.annotation) if owner is not None else RigConfig
        allowed = ", ".join(cls.model_fields) if cls is not None else "?"
        return f"{where}: unknown key; allowed here: {allowed}"
    if typ == "missing":
        return f"{where}: required key is missing"
    if typ in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        full = {k: ctx[k] for k in ("ge", "gt", "le", "lt") if k in ctx}
        # the other bound, if the field has one
        _, info = _field_at(RigConfig, loc)
        if info is not None:
            found = _constraints(info.metadata) or _constraints_in(info.annotation)
            for k, v in found.items():
                full.setdefault(k, v)
        return f"{where}: {value!r} is out of range; allowed: {_bounds(full)}"
    if typ == "value_error":
        msg = str(ctx.get("error", err["msg"]))
        head, sep, rest = msg.partition(": ")
        if sep and re.fullmatch(r"[a-z_.0-9]+", head):  # the validator named a sub-key
            return f"{where + '.' if loc else ''}{head}: {rest}"
        return f"{where}: {msg}"
    if typ in ("too_short", "too_long"):
        return f"{where}: {err['msg'].replace('List', 'list').replace('Value', 'value')}"
    return f"{where}: {err['msg']} (got {value!r})"


def config_error(exc: ValidationError, source: str = "") -> ConfigError:
    msgs = [_message(e) for e in exc.errors(include_url=False)]
    prefix = f"{source}: " if source else ""
    if len(msgs) == 1:
        return ConfigError(prefix + msgs[0])
    return ConfigError(prefix + f"{len(msgs)} problems:\n  " + "\n  ".join(msgs))


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
