"""Publish: the decoded stream and the pipeline's stats, as `rtframe` v1 on a PUB socket.

The socket takes at most `max_peers` connections (rtdecode.outputs.peer_limit): idle subscribers
that never read cannot use up this process's file descriptors or its memory. An address that is
already in use is a ConfigError naming it (a second `rtdecode run` on the same ports)."""

from __future__ import annotations

import time

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.outputs.peer_limit import DEFAULT_PEERS, PeerLimit
from rtdecode.sources import wire
from rtdecode.sources.exposure import bound


class Publisher:
    """A PUB socket with its own `seq` counter. Binds to 127.0.0.1 unless told otherwise.
    `what` names it in log lines and errors; `key` is the rig-file key of its address."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:*", hwm: int = 100, context: zmq.Context | None = None,
                 max_peers: int | None = DEFAULT_PEERS, what: str = "the publisher", key: str = "outputs.publish"):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)  # slow viewers lose old frames, never stall us
        self.sock.setsockopt(zmq.LINGER, 0)
        self._limit, self._domain = (None, None) if max_peers is None else PeerLimit.guard(self.sock, max_peers, what)
        try:
            self.sock.bind(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            hint = ("another `rtdecode run` (or another program) is bound to it: stop that one, or give this "
                    f"rig file another port in {key}" if exc.errno == zmq.EADDRINUSE else
                    f"check the address in {key} (tcp://HOST:PORT, HOST an address of this PC)")
            raise ConfigError(f"{what}: cannot bind {endpoint}: {zmq.strerror(exc.errno)}; {hint}") from None
        self.endpoint = bound(self.sock, what)
        self.seq = wire.Sequencer()

    def send(self, topic: str, array: np.ndarray | None = None, t: float | None = None, **fields) -> None:
        frames = wire.encode(topic, self.seq(), time.time() if t is None else t, array, **fields)
        self.sock.send_multipart(frames, copy=False)

    def peers(self) -> dict:
        """{peers, peers_max, limit, refused, accept_failed} ({} when not capped)."""
        return {} if self._limit is None else self._limit.stats(self._domain)

    def close(self) -> None:
        if self._limit is not None:
            self._limit.release(self.sock, self._domain)
            self._limit = None
        self.sock.close()
