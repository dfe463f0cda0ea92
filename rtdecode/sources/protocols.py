"""The registry of source protocols: what `source.protocol` (rig files) and `rtdecode probe
--protocol` accept, and what each one builds.

An entry carries everything rtdecode does differently per protocol:
- `modality`: the extraction section a rig file needs for it (`two_photon` or `ephys`);
- `source_keys`: its config model, the protocol-only keys of the rig file's `source` section it takes
  (typed in rtdecode.live.config.Source; any other protocol refuses them);
- `ingest`: its ingest factory, `(cfg, stages, frame_bytes) -> SourceIngest`
  (rtdecode.sources.interface; `stages`: the extraction stages the ingest runs itself, ephys only;
  `frame_bytes`: the largest acquisition frame, two-photon only);
- `probe`: its `rtdecode probe` listener, `(addresses, clock, ctx, heartbeat_port) -> report dict`;
- `stages` (ephys): `(cfg, n_inputs) -> the extraction stages the ingest runs`;
- `inputs_key` (ephys): the `source` key listing the model's inputs in order (channels, units);
- `example`: `() -> Example`, a few messages of the protocol and the frame its ingest makes of them
  (what the contract test, tests/sources/test_protocol_contracts.py, sends over loopback).

Factories are "module:function" paths imported when used: the ephys ingest lives in rtdecode.live
(it runs extraction stages), above this layer. Adding an entry here makes the command line, the rig
file check, `rtdecode run`, `rtdecode probe`, the NWB export and their error messages know it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from rtdecode.errors import ConfigError

MODALITIES = ("two_photon", "ephys")


@dataclass(frozen=True)
class Example:
    """A protocol's wire format, by example: publishing `messages` (multipart) to an ingest built from a
    rig file with these `source` keys and `extraction` section makes `frame` its first frame."""

    source: dict
    extraction: dict
    messages: list
    frame: object  # np.ndarray: the first frame's array


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    modality: str  # the extraction section a rig file needs for it: one of MODALITIES
    many_addresses: bool  # several publishers at once (rtframe: ScanImage + the stimulus PC)
    source_keys: tuple[str, ...]  # the protocol-only `source` keys it takes
    ingest: str  # "module:function" (cfg, stages, frame_bytes) -> SourceIngest
    probe: str  # "module:function" (addresses, clock, ctx, heartbeat_port) -> report dict
    example: str  # "module:function" () -> Example
    stages: str | None = None  # ephys: "module:function" (cfg, n_inputs) -> [Stage]
    inputs_key: str | None = None  # ephys: the source key listing the model's inputs

    def make_ingest(self, cfg, stages: list, frame_bytes: int | None):
        """The live ingest of rig file `cfg` (see the module docstring)."""
        return resolve(self.ingest)(cfg, stages, frame_bytes)

    def make_stages(self, cfg, n_inputs: int) -> list:
        """The extraction stages this protocol's ingest runs (ephys), or none (two-photon: the chains)."""
        return [] if self.stages is None else resolve(self.stages)(cfg, n_inputs)

    def listen(self, addresses: list[str], clock, ctx, heartbeat_port: int | None = None) -> dict:
        """What `rtdecode probe` reports for this protocol (rtdecode.sources.probe)."""
        return resolve(self.probe)(addresses, clock, ctx, heartbeat_port)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("rtframe", "rtdecode's wire format (ScanImage user function, virtual rig, stimulus PC)",
             "two_photon", many_addresses=True, source_keys=("channel", "planes", "scan_rois"),
             ingest="rtdecode.sources.ingest:from_config", probe="rtdecode.sources.probe:listen_rtframe",
             example="rtdecode.sources.wire:example"),
    Protocol("openephys", "the Open Ephys GUI's ZMQ Interface plugin (continuous data + heartbeat)",
             "ephys", many_addresses=False,
             source_keys=("heartbeat", "event_broadcaster", "channels", "stream", "stim_address", "idle_end_s"),
             ingest="rtdecode.live.ephys:openephys_ingest", probe="rtdecode.sources.probe:listen_openephys",
             example="rtdecode.sources.openephys.zmq_interface_wire:example", stages="rtdecode.live.ephys:openephys_stages", inputs_key="channels"),
    Protocol("eventbroadcaster", "the Open Ephys GUI's Event Broadcaster plugin (TTLs and spikes)",
             "ephys", many_addresses=False,
             source_keys=("stream", "stim_address", "idle_end_s", "group_by", "units"),
             ingest="rtdecode.live.ephys:eventbroadcaster_ingest",
             probe="rtdecode.sources.probe:listen_eventbroadcaster",
             example="rtdecode.sources.openephys.event_broadcaster:example", stages="rtdecode.live.ephys:eventbroadcaster_stages", inputs_key="units"),
    Protocol("scanimage_zmq", "ScanImage Premium's own ZeroMQ frame stream (layout assumed: sources/scanimage_zmq.py)",
             "two_photon", many_addresses=False, source_keys=("stim_address", "channel", "planes", "scan_rois"),
             ingest="rtdecode.sources.scanimage_zmq:from_config",
             probe="rtdecode.sources.probe:listen_scanimage_zmq", example="rtdecode.sources.scanimage_zmq:example"),
)}


def valid() -> str:
    return ", ".join(PROTOCOLS)


def get(name: str) -> Protocol:
    """The protocol called `name`; ConfigError lists the valid ones."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{name!r} is not one of {valid()}") from None


def keys_by_protocol() -> dict[str, tuple[str, ...]]:
    """Each protocol-only `source` key -> the protocols that take it, in registry order."""
    out: dict[str, list[str]] = {}
    for p in PROTOCOLS.values():
        for key in p.source_keys:
            out.setdefault(key, []).append(p.name)
    return {k: tuple(v) for k, v in out.items()}


def resolve(path: str):
    """The object a "module:name" path names (imported now)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
