"""The registry of source protocols: what `source.protocol` (rig files) and `rtdecode probe
--protocol` accept. Adding a protocol here makes the command line, the config check and their
error messages know it."""

from __future__ import annotations

from dataclasses import dataclass

from rtdecode.errors import ConfigError


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    many_addresses: bool  # several publishers at once (rtframe: ScanImage + the stimulus PC)
    extraction: str  # the extraction section a rig file needs for it: two_photon or ephys


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in (
    Protocol("rtframe", "rtdecode's wire format (ScanImage user function, virtual rig, stimulus PC)",
             many_addresses=True, extraction="two_photon"),
    Protocol("openephys", "the Open Ephys GUI's ZMQ Interface plugin (continuous data + heartbeat)",
             many_addresses=False, extraction="ephys"),
    Protocol("eventbroadcaster", "the Open Ephys GUI's Event Broadcaster plugin (TTLs and spikes)",
             many_addresses=False, extraction="ephys"),
    Protocol("scanimage_zmq", "ScanImage Premium's own ZeroMQ frame stream (layout assumed: sources/scanimage_zmq.py)",
             many_addresses=False, extraction="two_photon"),
)}


def valid() -> str:
    return ", ".join(PROTOCOLS)


def get(name: str) -> Protocol:
    """The protocol called `name`; ConfigError lists the valid ones."""
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"{name!r} is not one of {valid()}") from None
