"""ZeroMQ addresses: the one parser every source, the rig config and the probe use.

Strict form (rig files): `tcp://HOST:PORT`. Loose form (the probe's command line): also `HOST:PORT`
or a bare `PORT` on this machine.
"""

from __future__ import annotations

import re

from rtdecode.errors import ConfigError

_TCP = re.compile(r"^tcp://(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.*-]+):(?P<port>\d+)$")
EXAMPLE = "tcp://127.0.0.1:5556"


def split_endpoint(value: str) -> tuple[str, int]:
    """`tcp://HOST:PORT` -> (HOST, PORT). ConfigError says what form is expected."""
    m = _TCP.match(value) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(f"{value!r} is not a ZeroMQ address of the form tcp://HOST:PORT (e.g. {EXAMPLE})")
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        raise ConfigError(f"{value!r}: port {port} is not in 1..65535")
    return m.group("host"), port


def check_endpoint(value: str) -> str:
    """`value` unchanged if it is a valid `tcp://HOST:PORT`; ConfigError otherwise."""
    split_endpoint(value)
    return value


def local_host(host: str) -> str:
    """A bind address (`*`, `0.0.0.0`, `localhost`) as the loopback address that reaches it here."""
    return "127.0.0.1" if host in ("*", "0.0.0.0", "localhost") else host


def parse_address(address: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """`tcp://HOST:PORT`, `HOST:PORT` or `PORT` -> (host, port), a bind address (`*`, `0.0.0.0`)
    read as this machine. ConfigError if unreadable."""
    text = str(address).strip()
    if "://" in text and not text.startswith("tcp://"):
        raise ConfigError(f"address {address!r}: only tcp:// addresses are supported")
    bare = text[len("tcp://"):] if text.startswith("tcp://") else text
    host, _, port = bare.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"address {address!r}: expected tcp://HOST:PORT, HOST:PORT or PORT")
    try:
        host, p = split_endpoint(f"tcp://{host or default_host}:{port}")
    except ConfigError as exc:
        raise ConfigError(f"address {address!r}: {str(exc).split(': ', 1)[-1]}") from None
    return ("127.0.0.1" if host in ("*", "0.0.0.0") else host), p
