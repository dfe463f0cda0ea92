"""Connection floods on the sockets a live `rtdecode run` binds (issue 27, class 3).

    rtdecode bench hostile flood [--connections 2000] [--flood-s 10] --json OUT.json

Starts `python -m rtdecode run RIG.yaml --record SESSION` on the virtual rig of
rtdecode.bench.hostile_time (frames at 30 Hz, a trigger rule that fires on every decoded frame on a
zmq trigger PUB, `max_age_ms: 50`), and while frames keep coming opens `--connections` TCP
connections to the decoded-stream PUB and as many to the trigger PUB that complete the ZMTP
handshake as a SUB subscribed to everything and then never read (`ZmtpPeer`), plus connect /
handshake / disconnect churn on both, for `--flood-s` seconds; then closes them all and sends 30 Hz
frames for the recovery.

Reported: `stale_fired` (must be 0), frames sent / recorded / counted lost (`uncounted_lost` must
be 0), `records_lost`, the live process's open descriptors and RSS before / at the peak of / after
the flood, how many flood connections the process kept open (`peers`, `refused` per socket from its
stats), and `recovery_s` (the end of the flood to the first trigger fired on a fresh frame).
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

SIGNATURE = b"\xff" + b"\x00" * 8 + b"\x7f"


def _greeting() -> bytes:
    """ZMTP 3.0 greeting, NULL mechanism, as a client."""
    return SIGNATURE + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + b"\x00" + b"\x00" * 31


def _ready(socket_type: bytes = b"SUB") -> bytes:
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(socket_type)) + socket_type
    return b"\x04" + bytes([len(body)]) + body


def _recv_exact(s: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed by the peer")
        out += chunk
    return out


def zmtp_peer(port: int, host: str = "127.0.0.1", timeout_s: float = 5.0, subscribe: bool = True) -> tuple[socket.socket, bool]:
    """A raw TCP connection that completes the ZMTP 3.0 handshake as a SUB (subscribed to everything
    when `subscribe`) and then never reads: (the socket, True if the server accepted the handshake
    with READY; False when it answered ERROR, e.g. refused by a peer limit). Raises OSError when the
    connection itself fails. The receive buffer is kept small so that the server's queue fills."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout_s)
    try:
        s.connect((host, port))
        s.sendall(_greeting())
        _recv_exact(s, 64)  # the server's greeting
        s.sendall(_ready())
        flags = _recv_exact(s, 1)[0]
        size = _recv_exact(s, 8 if flags & 0x02 else 1)
        size = struct.unpack(">Q", size)[0] if flags & 0x02 else size[0]
        body = _recv_exact(s, size)
        ok = body[1:1 + body[0]] == b"READY"
        if ok and subscribe:
            s.sendall(b"\x00\x01\x01")  # a message frame: SUBSCRIBE to every topic (ZMTP 3.0)
    except (OSError, ConnectionError):
        s.close()
        raise
    return s, ok


class Flood:
    """Idle ZMTP peers on some ports, opened by a thread: `open(n)` per port, `churn()` one peer
    that connects, handshakes and closes at once per port and turn, `close()` everything."""

    def __init__(self, ports: list[int]):
        self.ports = ports
        self.held: list[socket.socket] = []
        self.accepted = self.refused = self.failed = self.churned = 0
        self.errors: dict[str, int] = {}

    def _one(self, port: int, keep: bool) -> None:
        try:
            s, ok = zmtp_peer(port)
        except (OSError, ConnectionError) as exc:
            self.failed += 1
            key = type(exc).__name__ + ("" if not getattr(exc, "errno", None) else f" {os.strerror(exc.errno)}")
            self.errors[key] = self.errors.get(key, 0) + 1
            return
        self.accepted += ok
        self.refused += not ok
        if keep:
            self.held.append(s)
        else:
            self.churned += 1
            s.close()

    def open(self, n: int, stop: threading.Event | None = None) -> None:
        for _ in range(n):
            if stop is not None and stop.is_set():
                return
            for port in self.ports:
                self._one(port, keep=True)

    def churn(self, seconds: float) -> None:
        t0 = time.time()
        while time.time() - t0 < seconds:
            for port in self.ports:
                self._one(port, keep=False)

    def close(self) -> None:
        for s in self.held:
            s.close()
        self.held.clear()

    def stats(self) -> dict:
        return {"held": len(self.held), "accepted": self.accepted, "refused": self.refused, "failed": self.failed,
                "churned": self.churned, "errors": dict(self.errors)}


def add_parser(sub) -> None:
    """The `flood` subcommand of `rtdecode bench hostile`."""
    f = sub.add_parser("flood", help="idle ZMTP connections and churn on the decoded-stream and trigger PUBs")
    f.add_argument("--connections", type=int, default=2000, help="idle connections opened to each socket")
    f.add_argument("--flood-s", type=float, default=10.0, help="seconds of the flood (idle peers, then churn)")
    f.add_argument("--max-peers", type=int, default=None, help="the rig file's outputs.max_peers (default: its default)")
    f.add_argument("--nofile", type=int, default=1024, help="the live process's descriptor limit (0: inherited)")
    f.add_argument("--frame", type=int, default=256)
    f.add_argument("--rois", type=int, default=100)
    f.add_argument("--json", required=True)


def run(args, command: str = "") -> dict:
    """The scenario with its command, machine and load, merged into `args.json`'s scenarios."""
    from rtdecode.bench import hostile_time

    return hostile_time.record(args, command, lambda: run_flood(args.connections, args.flood_s, args.frame, args.rois,
                                                                args.max_peers, args.nofile or None))


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def run_flood(connections: int = 2000, flood_s: float = 10.0, side: int = 256, n_rois: int = 100,
              max_peers: int | None = None, nofile: int | None = 1024) -> dict:
    """The scenario (module doc). `max_peers`: the rig file's outputs.max_peers (None: its default);
    `nofile`: the live process's descriptor limit (the common 1,024; None: inherited)."""
    import zmq

    from rtdecode.bench import hostile_common as hostile
    from rtdecode.bench import hostile_time as ht

    ctx = zmq.Context.instance()
    with tempfile.TemporaryDirectory(prefix="rtdecode-hostile-flood-") as tmp:
        tmp = Path(tmp)
        rig = ht._rig(tmp, side, n_rois, max_peers=max_peers)
        proc, sender, stats = ht._start(tmp, rig, ctx, nofile=nofile)
        warm = sender.stream(4.0, 30.0)
        fds0, rss0 = open_fds(proc.pid), hostile._rss_kb(proc.pid)
        flood = Flood([rig["ports"]["publish"], rig["ports"]["trigger"]])
        stop = threading.Event()
        peak = {"fds": fds0, "rss_kb": rss0}

        def attack():
            flood.open(connections, stop)
            while not stop.is_set():
                flood.churn(0.2)

        def watch():
            while not stop.is_set():
                peak["fds"] = max(peak["fds"], open_fds(proc.pid))
                peak["rss_kb"] = max(peak["rss_kb"], hostile._rss_kb(proc.pid))
                time.sleep(0.1)

        threads = [threading.Thread(target=attack, daemon=True), threading.Thread(target=watch, daemon=True)]
        for th in threads:
            th.start()
        f0, f1 = sender.stream(flood_s, 30.0)
        stop.set()
        for th in threads:
            th.join(60)
        during = flood.stats()
        flood.close()
        r0, r1 = sender.stream(8.0, 30.0)
        fds1, rss1 = open_fds(proc.pid), hostile._rss_kb(proc.pid)
        live = [s for t, s in stats.seen if t >= r0]
        fin = ht._finish(proc, sender, stats, tmp)
        events = ht._triggers(fin["session"], sender.sent)
        out = {"scenario": "flood", "frame_side": side, "rois": n_rois, "connections_per_socket": connections,
               "flood_s": flood_s, "max_peers": max_peers, "nofile": nofile, "flood": during,
               "fds_before": fds0, "fds_peak": peak["fds"], "fds_after": fds1,
               "rss_mb_peak": round(peak["rss_kb"] / 1024, 1),
               "fired_warm": len(ht._in(events, *warm)), "fired_during_flood": len(ht._in(events, f0, f1)),
               "fired_after_flood": len(ht._in(events, r0, r1)),
               "peers": fin["end"].get("peers") or (live[-1].get("peers") if live else None),
               "record_errors": fin["end"].get("record_errors"),
               **ht._common(fin, sender, {"before": rss0, "after": rss1}, events, f1)}
    return out
