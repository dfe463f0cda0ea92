"""Ingest: subscribe to acquisition publishers, validate `rtframe` messages, count what was lost.

A malformed message is counted under `rejected` (with its reason) and logged, at most once per
reason per second so a broken sender cannot flood the log; it never stops the pipeline. Gaps in a
publisher's `seq` (messages dropped by a full queue or a slow subscriber) are counted as `dropped`.
A publisher that restarts (its `seq` goes back, e.g. to 0) is counted under `restarts`, logged, and
followed: the messages after the restart are accepted and no gap is counted across it.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import zmq

from rtdecode.sources import wire
from rtdecode.errors import WireError

log = logging.getLogger(__name__)


class Ingest:
    """One SUB socket per publisher (each has its own `seq` counter, so gaps are counted per
    publisher: e.g. ScanImage and the stimulus PC). `receive(timeout_ms)` -> Message or None."""

    def __init__(self, endpoints: list[str], topics: tuple[str, ...] = ("frame", "stim", "stats"),
                 hwm: int = 1000, context: zmq.Context | None = None):
        self.ctx = context or zmq.Context.instance()
        self.poller = zmq.Poller()
        self.socks: list[zmq.Socket] = []
        self.gap_counters: dict[zmq.Socket, wire.GapCounter] = {}
        for ep in endpoints:
            sock = self.ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.LINGER, 0)
            for topic in topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
            sock.connect(ep)
            self.poller.register(sock, zmq.POLLIN)
            self.socks.append(sock)
            self.gap_counters[sock] = wire.GapCounter()
        self.received: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self._last_log: dict[str, float] = {}
        self._ready: list[zmq.Socket] = []

    @property
    def gaps(self) -> wire.GapCounter:
        """The gap counter of the first publisher (the acquisition source)."""
        return self.gap_counters[self.socks[0]]

    @gaps.setter
    def gaps(self, counter: wire.GapCounter) -> None:
        self.gap_counters[self.socks[0]] = counter

    @property
    def dropped(self) -> int:
        return sum(g.missing for g in self.gap_counters.values())

    @property
    def restarts(self) -> int:
        return sum(g.restarts for g in self.gap_counters.values())

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected.values())

    def receive(self, timeout_ms: int = 100) -> wire.Message | None:
        """The next valid message, or None if nothing valid arrived within `timeout_ms`."""
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if not self._ready:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                self._ready = [s for s, _ in self.poller.poll(left)]
                if not self._ready:
                    return None
            sock = self._ready.pop(0)
            frames = sock.recv_multipart(copy=True)
            received = time.perf_counter()
            try:
                msg = wire.decode(frames)
            except WireError as exc:
                self._reject(str(exc))
                continue
            msg.received = received
            gaps = self.gap_counters[sock]
            restarts, last = gaps.restarts, gaps.last
            gaps.see(msg.seq)
            if gaps.restarts != restarts:
                log.warning("publisher restarted: seq went back from %s to %d (%d restart(s) so far); following it",
                            last, msg.seq, gaps.restarts)
            self.received[msg.topic] += 1
            return msg

    def _reject(self, reason: str) -> None:
        key = reason.split(":")[0] + ":" + reason.split(":")[1][:40] if ":" in reason else reason[:60]
        self.rejected[key] += 1
        now = time.monotonic()
        if now - self._last_log.get(key, 0.0) > 1.0:
            self._last_log[key] = now
            log.warning("rejected message (%d so far of this kind): %s", self.rejected[key], reason)

    def counts(self) -> dict:
        return {"received": dict(self.received), "rejected": self.n_rejected,
                "rejected_by_reason": dict(self.rejected), "dropped": self.dropped,
                "restarts": self.restarts}

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
