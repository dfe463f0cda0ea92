"""Reconnect a connecting socket that ZeroMQ has given up on.

ZeroMQ reconnects by itself after a network error, but not after a protocol error, and a message
over ZMQ_MAXMSGSIZE is one: the connection is dropped for good, so one oversized message would
silence a publisher for the rest of the session. `Redial(sock, endpoint).check()` (non-blocking,
call it from the receive loop) watches the socket's monitor: a disconnection that ZeroMQ does not
follow with a reconnection within `grace_s` is redialled here (harmless when ZeroMQ was retrying:
it goes on retrying), and counted (`redials`). Owners call `close()`: events nobody reads would
fill the monitor pipe (only connection changes are monitored, so that takes ~1000 of them).
"""

from __future__ import annotations

import logging
import time

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger(__name__)


class Redial:
    def __init__(self, sock: zmq.Socket, endpoint: str, what: str = "socket", grace_s: float = 0.5):
        self.sock, self.endpoint, self.what, self.grace_s = sock, endpoint, what, grace_s
        # Only connection changes: never the per-attempt events (CONNECT_RETRIED, CONNECT_DELAYED),
        # which a socket retrying a dead port emits forever; ZeroMQ's monitor pipe is bounded, and
        # events nobody reads would block the I/O thread of the whole context.
        self.monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_CONNECTED)
        self.redials = 0
        self._dropped_at: float | None = None  # a disconnection ZeroMQ has not followed up yet

    def check(self) -> int:
        """Handle pending monitor events; returns 1 if the socket was redialled now, else 0."""
        for _ in range(100):
            if not self.monitor.poll(0):
                break
            try:
                event = recv_monitor_message(self.monitor, zmq.NOBLOCK)
            except (zmq.Again, ValueError):  # a partial or odd monitor message: nothing to act on
                break
            if event.get("event") == zmq.EVENT_DISCONNECTED:
                self._dropped_at = time.monotonic()
            else:  # ZeroMQ reconnected by itself
                self._dropped_at = None
        if self._dropped_at is None or time.monotonic() - self._dropped_at < self.grace_s:
            return 0
        self._dropped_at = None
        try:
            self.sock.disconnect(self.endpoint)
        except zmq.ZMQError:
            pass  # already forgotten by ZeroMQ
        self.sock.connect(self.endpoint)
        self.redials += 1
        if self.redials <= 10 or self.redials % 1000 == 0:
            log.warning("%s: the connection to %s was dropped and not re-established within %.1f s (the sender "
                        "stopped or restarted, or refused a message over the size limit); dialling it again "
                        "(%d time(s))", self.what, self.endpoint, self.grace_s, self.redials)
        return 1

    def close(self) -> None:
        try:
            self.sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.monitor.close(linger=0)
