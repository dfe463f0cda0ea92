"""A warning, naming the port, whenever rtdecode binds a socket beyond loopback.

rtdecode's sockets carry no authentication: anything that can reach a bound port can send it
messages or read what it publishes. Binding `*`, `0.0.0.0` or a LAN address is sometimes what a
rig needs (acquisition on another PC), so it is allowed, but said out loud every time.
"""

from __future__ import annotations

import ipaddress
import logging

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # '*', an interface name or a host name: reachable from elsewhere


def warn_if_exposed(endpoint: str, what: str) -> bool:
    """Log a warning if `endpoint` (tcp://HOST:PORT, as bound) is not on loopback; True if it is not."""
    if not endpoint.startswith("tcp://"):
        return False
    host, _, port = endpoint[len("tcp://"):].rpartition(":")
    if is_loopback(host):
        return False
    log.warning("%s listens on %s (port %s), beyond loopback: any machine that can reach it can connect; "
                "bind 127.0.0.1 unless another PC must reach it, and firewall the port", what, endpoint, port)
    return True


def bound(sock, what: str) -> str:
    """The endpoint `sock` was last bound to (LAST_ENDPOINT), after warning if it is exposed."""
    import zmq

    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    warn_if_exposed(endpoint, what)
    return endpoint
