"""A bound on the peers of a bound socket (the decoded-stream and trigger PUBs), so that idle
connections cannot use up this process's file descriptors (issue 27, class 3).

ZeroMQ has no option for "at most N connections". What it has: a ZAP handler (RFC 27), asked
during the handshake of every connection to a socket that has a ZAP domain (with the NULL
mechanism too, libzmq >= 4.3), which may refuse it (the peer gets an ERROR command and the
connection is closed); and a socket monitor, whose ACCEPTED / DISCONNECTED events carry the
connection's file descriptor. `PeerLimit` runs one thread per ZeroMQ context that does both: it
counts each guarded socket's open connections from its monitor and refuses a handshake while that
socket already has `limit` others open. A peer that connects and never completes the handshake
is closed by libzmq after ZMQ_HANDSHAKE_IVL (set short here, `HANDSHAKE_MS`).

Counts per socket: `peers` (open now), `peers_max`, `refused`, `accept_failed` (accept(2) errors,
e.g. EMFILE). A socket whose guard could not be set up (another ZAP handler in this context) is
still bound, unguarded, with a warning.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import zmq

log = logging.getLogger(__name__)

ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # fixed by RFC 27
HANDSHAKE_MS = 3000  # a connection that has not completed the ZMTP handshake by then is closed
DEFAULT_PEERS = 16  # viewers and trigger listeners of one rig; refused beyond (outputs.max_peers)
_EVENTS = zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED | zmq.EVENT_ACCEPT_FAILED


class _Guarded:
    def __init__(self, name: str, limit: int, monitor):
        self.name, self.limit, self.monitor = name, limit, monitor
        self.fds: set[int] = set()
        self.peers_max = self.refused = self.accept_failed = 0
        self.last_warned = 0.0

    def stats(self) -> dict:
        return {"peers": len(self.fds), "peers_max": self.peers_max, "limit": self.limit, "refused": self.refused,
                "accept_failed": self.accept_failed}


class PeerLimit:
    """The ZAP handler and monitor reader of one context: `PeerLimit.guard(sock, limit, what)` before
    `sock.bind`, `release(sock, domain)` before `sock.close()`. Its thread ends with its last guarded
    socket (so that the context can be terminated)."""

    _lock = threading.Lock()
    _by_ctx: dict[int, "PeerLimit"] = {}

    @classmethod
    def guard(cls, sock: zmq.Socket, limit: int, what: str) -> tuple["PeerLimit | None", bytes | None]:
        """Cap `sock`'s peers at `limit` (call before bind): (the context's PeerLimit, the socket's
        ZAP domain), or (None, None) when it cannot be guarded (warned)."""
        with cls._lock:
            ctx = sock.context
            pl = cls._by_ctx.get(id(ctx))
            if pl is None or pl._closed:
                if pl is not None:  # its thread is ending: its ZAP endpoint must be free first
                    pl._thread.join(2)
                pl = cls._by_ctx[id(ctx)] = PeerLimit(ctx)
                pl._thread.start()
                pl._ready.wait(5)
            if pl._error is not None:
                cls._by_ctx.pop(id(ctx), None)
                log.warning("%s: connections not capped (%s)", what, pl._error)
                return None, None
            pl._n += 1
            domain = f"rtdecode-{id(pl)}-{pl._n}".encode()
            sock.setsockopt(zmq.ZAP_DOMAIN, domain)
            sock.setsockopt(zmq.HANDSHAKE_IVL, HANDSHAKE_MS)
            monitor = sock.get_monitor_socket(_EVENTS)
            pl._stats[domain] = {"peers": 0, "peers_max": 0, "limit": limit, "refused": 0, "accept_failed": 0}
            pl._todo.put(("add", domain, _Guarded(what, limit, monitor)))
            return pl, domain

    def __init__(self, ctx: zmq.Context):
        self.ctx = ctx
        self._todo: queue.Queue = queue.Queue()
        self._guarded: dict[bytes, _Guarded] = {}
        self._stats: dict[bytes, dict] = {}
        self._n = 0
        self._closed = False
        self._ready = threading.Event()
        self._error: str | None = None
        self._thread = threading.Thread(target=self._run, name="peer-limit", daemon=True)

    def release(self, sock: zmq.Socket, domain: bytes | None) -> None:
        if domain is None:
            return
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self._todo.put(("remove", domain, None))

    def stats(self, domain: bytes | None) -> dict:
        """{peers, peers_max, limit, refused, accept_failed} of a guarded socket ({} if unguarded)."""
        return dict(self._stats.get(domain, {})) if domain is not None else {}

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        try:
            zap = self.ctx.socket(zmq.ROUTER)
            zap.setsockopt(zmq.LINGER, 0)
            zap.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as exc:
            self._error = f"cannot serve ZAP at {ZAP_ENDPOINT}: {exc}"
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        by_monitor: dict[zmq.Socket, bytes] = {}
        had_any = False
        try:
            while True:
                while True:  # registrations
                    try:
                        op, domain, g = self._todo.get_nowait()
                    except queue.Empty:
                        break
                    if op == "add":
                        self._guarded[domain] = g
                        by_monitor[g.monitor] = domain
                        poller.register(g.monitor, zmq.POLLIN)
                        had_any = True
                    else:
                        g = self._guarded.pop(domain, None)
                        if g is not None:
                            poller.unregister(g.monitor)
                            by_monitor.pop(g.monitor, None)
                            g.monitor.close(linger=0)
                if had_any and not self._guarded:
                    with PeerLimit._lock:  # the last socket went: end, so that the context can terminate
                        if self._todo.empty():
                            self._closed = True
                            return
                    continue
                events = dict(poller.poll(100))
                for mon, domain in list(by_monitor.items()):  # monitors first: a peer is counted before its ZAP request
                    if mon in events:
                        self._drain(mon, self._guarded[domain])
                if zap in events:
                    while zap.poll(0):
                        self._answer(zap)
        except zmq.ContextTerminated:
            pass
        finally:
            self._closed = True
            for g in self._guarded.values():
                g.monitor.close(linger=0)
            zap.close(linger=0)

    def _drain(self, mon, g: _Guarded) -> None:
        from zmq.utils.monitor import parse_monitor_message

        while mon.poll(0):
            try:
                ev = parse_monitor_message(mon.recv_multipart())
            except (zmq.ZMQError, ValueError):
                continue
            if ev["event"] == zmq.EVENT_ACCEPTED:
                g.fds.add(ev["value"])
                g.peers_max = max(g.peers_max, len(g.fds))
            elif ev["event"] == zmq.EVENT_DISCONNECTED:
                g.fds.discard(ev["value"])
            elif ev["event"] == zmq.EVENT_ACCEPT_FAILED:
                g.accept_failed += 1
        self._publish(g)

    def _answer(self, zap) -> None:
        parts = zap.recv_multipart()
        if len(parts) < 6:
            return
        request_id, domain = parts[3], parts[4]
        g = self._guarded.get(domain)
        if g is not None:  # the peers the monitor has shown by now, this one included
            self._drain(g.monitor, g)
        ok = g is None or len(g.fds) <= g.limit
        if not ok:
            g.refused += 1
            now = time.monotonic()
            if now - g.last_warned > 10:
                g.last_warned = now
                log.warning("%s: refused a connection from %s: %d peers connected (limit %d; %d refused so far)",
                            g.name, parts[5].decode(errors="replace"), len(g.fds) - 1, g.limit, g.refused)
            self._publish(g)
        zap.send_multipart(parts[:2] + [b"1.0", request_id, b"200" if ok else b"400",
                                         b"OK" if ok else b"too many peers", b"", b""])

    def _publish(self, g: _Guarded) -> None:
        for domain, other in self._guarded.items():
            if other is g:
                self._stats[domain] = g.stats()


def raise_descriptor_limit() -> tuple[int, int] | None:
    """Raise this process's soft limit on open descriptors (RLIMIT_NOFILE) to its hard limit (often
    1,024 -> 524,288 under systemd), so that a burst of connections (each held up to HANDSHAKE_MS
    before it is refused or closed) does not take the descriptors the recorder needs. Returns
    (soft, hard) as they are now, None where there is no such limit (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.info("could not raise the descriptor limit from %d to %d: %s", soft, hard, exc)
    if soft != resource.RLIM_INFINITY and soft < 4096:
        log.warning("this process may open only %d files and connections (ulimit -n): a connection flood on a "
                    "published port can use them up for a few seconds (the recorder retries meanwhile)", soft)
    return soft, hard

