"""Ingest: subscribe to acquisition publishers, validate `rtframe` messages, count what was lost.

The first endpoint is the acquisition source (ScanImage, the virtual rig); others (the stimulus PC)
may send `stim` messages only. A message that cannot be used (malformed, too large, a `frame` or a
`stats` from a publisher other than the source) is counted under a fixed reason
(rtdecode.sources.rejects) and logged a bounded number of times; it never stops the pipeline.

Bounds: every socket refuses messages over `max_msg_bytes` (ZMQ_MAXMSGSIZE: the peer is
disconnected before the message is held in memory, then redialled: rtdecode.sources.redial) and
holds at most `hwm` messages.

Gaps in a publisher's `seq` (messages dropped by a full queue or a slow subscriber) are counted as
`dropped`. A publisher that restarts (its `seq` goes back, e.g. to 0, or jumps absurdly far) is
counted under `restarts`, logged, and followed: no gap is counted across it. Two publishers on one
address (interleaved counters: rtdecode.sources.wire.GapCounter) are not a stream of restarts: the
first is followed, the other's messages are rejected (reason `source`) before they touch the clock
estimate, and the jump its first message made is uncounted (`msg.after_other` on the message that
showed it, so that the live loop uncounts it too).

Congestion: the source's queue is congested after a drop (a `seq` gap) or when `hwm` frames in a row
were read with others queued behind them (its high-water mark), until a frame is read off an empty
queue; its frames carry `congested` (no trigger fires on them) and are counted (`congested_frames`).

Time: each message's arrival (`received`, time.perf_counter() right after the socket handed it
over) and its acquisition mapped onto the same clock (`acquired`): the sender's `t` corrected by a
per-publisher minimum-delay clock-offset estimate (rtdecode.sources.clock), so time spent in the
socket queues shows; and `local_t`, the sender's `t` on this PC's wall clock (`t + min_delay` of
that publisher: its clock offset plus the bare one-way transport, ~0.1 ms on a LAN, which is the
residual error; the offset itself cancels). Times from different publishers (ScanImage, the stimulus
PC) are compared on `local_t` only. A message whose `t` is off its publisher's clock (far ahead, or
a clock stepped back, not yet confirmed: rtdecode.sources.clock) gets this PC's arrival time and
`clock_rejected`; confirmed steps restart that publisher's estimate (`clock_steps`, `clock_rejected`). Freshness: `latest` drains the source's queue at each frame and hands out only
the newest frame (the skipped ones are counted, and `msg.skipped` says how many came just before);
`every_frame` hands out every frame.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque

import zmq

from rtdecode.errors import WireError
from rtdecode.sources import wire
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.redial import Redial
from rtdecode.sources.rejects import Rejects

log = logging.getLogger(__name__)

FRESHNESS = ("every_frame", "latest")
HEADER_MARGIN = wire.MAX_HEADER + 4096


def max_message_bytes(payload_bytes: int, margin: float = 2.0) -> int:
    """A ZMQ_MAXMSGSIZE for messages whose largest payload is `payload_bytes`."""
    return int(payload_bytes * margin) + HEADER_MARGIN


def from_config(cfg, stages: list, frame_bytes: int | None) -> Ingest:
    """Protocol `rtframe` (rtdecode.sources.protocols): subscribers to every `source.address`, refusing
    messages much larger than `frame_bytes` (the acquisition frame's size; stimulus images ride along
    too, so at least 4 MiB)."""
    limit = max_message_bytes(max(frame_bytes or 0, 4 * 2**20))
    return Ingest(cfg.source.address, max_msg_bytes=limit, freshness=cfg.freshness)


class Ingest:
    """One SUB socket per publisher (each has its own `seq` counter, so gaps are counted per
    publisher: e.g. ScanImage and the stimulus PC). `receive(timeout_ms)` -> Message or None; the
    ingest interface, rtdecode.sources.interface.SourceIngest."""

    def __init__(self, endpoints: list[str], topics: tuple[str, ...] = ("frame", "stim", "stats"),
                 hwm: int = 64, context: zmq.Context | None = None, max_msg_bytes: int = 64 * 2**20,
                 freshness: str = "every_frame", max_drain: int = 10000, any_source: bool = False):
        if freshness not in FRESHNESS:
            raise ValueError(f"freshness {freshness!r}; valid: {', '.join(FRESHNESS)}")
        self.ctx = context or zmq.Context.instance()
        self.poller = zmq.Poller()
        self.socks: list[zmq.Socket] = []
        self.gap_counters: dict[zmq.Socket, wire.GapCounter] = {}
        self.clocks: dict[zmq.Socket, ClockOffset] = {}
        self.index: dict[zmq.Socket, int] = {}
        self.redialers: list[Redial] = []  # a connection dropped for a message over the limit is redialled
        self.max_msg_bytes = int(max_msg_bytes)
        self.max_payload = min(wire.MAX_PAYLOAD, self.max_msg_bytes)
        self.freshness = freshness
        self.max_drain = max_drain
        self.any_source = any_source  # True: every publisher may send every topic (the probe)
        for i, ep in enumerate(endpoints):
            sock = self.ctx.socket(zmq.SUB)
            sock.setsockopt(zmq.RCVHWM, hwm)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, self.max_msg_bytes)
            for topic in topics:
                sock.setsockopt(zmq.SUBSCRIBE, topic.encode())
            sock.connect(ep)
            self.poller.register(sock, zmq.POLLIN)
            self.socks.append(sock)
            self.index[sock] = i
            self.gap_counters[sock] = wire.GapCounter()
            self.clocks[sock] = ClockOffset(name=ep)
            self.redialers.append(Redial(sock, ep, "ingest"))
        self.endpoints = list(endpoints)
        self.received: Counter[str] = Counter()
        self.rejects = Rejects("ingest", logger=log)
        self.rejected = self.rejects.counts
        self.skipped = 0  # frames not handed out under the 'latest' policy
        self.hwm = hwm
        self.congested = False  # the source's queue is at its high-water mark, or it is dropping
        self.congested_frames = 0  # source frames handed out while congested
        self._behind = 0  # source frames read in a row with more queued behind them
        self._ready: list[zmq.Socket] = []
        self._pending: deque[wire.Message] = deque()

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
        return self.rejects.total

    def receive(self, timeout_ms: int = 100) -> wire.Message | None:
        """The next valid message, or None if nothing valid arrived within `timeout_ms`."""
        if self._pending:
            return self._pending.popleft()
        deadline = time.monotonic() + timeout_ms / 1000
        for r in self.redialers:
            r.check()
        while True:
            if not self._ready:
                left = max(0, int((deadline - time.monotonic()) * 1000))
                self._ready = [s for s, _ in self.poller.poll(left)]
                if not self._ready:
                    return None
            sock = self._ready.pop(0)
            msg = self._read(sock)
            if msg is None:
                continue
            if msg.topic == "frame" and self.freshness == "latest":
                return self._newest(sock, msg)
            return msg

    def _read(self, sock: zmq.Socket) -> wire.Message | None:
        """One message from `sock` (which has one ready), decoded and accounted; None if rejected."""
        try:
            parts = sock.recv_multipart(copy=False, flags=zmq.NOBLOCK)
        except zmq.Again:
            return None
        # Topic and header as bytes (small); the payload stays in ZeroMQ's buffer and the frame's
        # array is a read-only view on it: no copy of the frame between the socket and the chain.
        frames = [p.bytes for p in parts[:-1]] + [parts[-1].buffer] if len(parts) == 3 else [p.bytes for p in parts]
        received = time.perf_counter()
        wall = time.time()
        try:
            msg = wire.decode(frames, self.max_payload)
        except WireError as exc:
            self.rejects.error(exc)
            return None
        source = self.index[sock]
        if source != 0 and msg.topic != "stim" and not self.any_source:
            self.rejects.reject("source", f"{msg.topic} from {self.endpoints[source]}, which may send stim only")
            return None
        msg.received, msg.source = received, source
        gaps = self.gap_counters[sock]
        restarts, last, missing = gaps.restarts, gaps.last, gaps.missing
        if gaps.see(msg.seq) == wire.OTHER:  # a second publisher on this address: never data, never timing
            self.rejects.reject("source", f"{msg.topic} seq {msg.seq} continues a second publisher's counter on "
                                          f"{self.endpoints[source]} (the one followed is at seq {gaps.last})")
            return None
        if gaps.swapped:
            msg.after_other = True
            if gaps.swaps <= 10 or gaps.swaps % 1000 == 0:
                log.warning("two publishers on %s (seq %d and %d interleaved): following the first, rejecting the "
                            "other's messages (reason 'source'); its first message got through", self.endpoints[source],
                            msg.seq, gaps.other)
        behind = bool(sock.getsockopt(zmq.EVENTS) & zmq.POLLIN)  # more messages queued behind this one
        clock = self.clocks[sock]
        excess = clock.see(msg.t, wall, queued=behind)
        if excess is None:  # off its publisher's clock (a `t` far ahead, a step back): never timing data
            msg.clock_rejected = True
            msg.acquired, msg.local_t = received, wall
        else:
            msg.acquired = received - excess
            msg.age_margin = clock.creep()
            local = clock.local(msg.t)
            msg.local_t = wall if local is None else local
        if source == 0 and msg.topic == "frame":
            self._congestion(msg, behind, gaps.missing > missing)
        if gaps.restarts > restarts:
            if gaps.restarts <= 10 or gaps.restarts % 1000 == 0:
                log.warning("publisher restarted (%s): seq went from %s to %d (%d restart(s) so far); following it",
                            self.endpoints[source], last, msg.seq, gaps.restarts)
        self.received[msg.topic] += 1
        return msg

    def _congestion(self, msg: wire.Message, behind: bool, dropped: bool) -> None:
        """The source's queue is congested from a drop (a `seq` gap) or `hwm` frames read in a row
        with others queued behind them (its high-water mark), until a frame is read off an empty
        queue. Triggers do not fire on a congested frame (rtdecode.outputs.triggers.engine)."""
        self._behind = self._behind + 1 if behind else 0
        if dropped or self._behind >= self.hwm:
            if not self.congested:
                log.warning("ingest congested (%s): triggers off until its queue is empty",
                            "dropping" if dropped else f"{self._behind} frames queued in a row")
            self.congested = True
        elif not behind:
            self.congested = False
        msg.congested = self.congested
        if self.congested:
            self.congested_frames += 1

    def _newest(self, sock: zmq.Socket, msg: wire.Message) -> wire.Message:
        """'latest': read what is already queued on the source; keep every non-frame message (in
        order) and only the newest frame; returns the first of them."""
        skipped = 0
        for _ in range(self.max_drain):
            if not sock.poll(0):
                break
            nxt = self._read(sock)
            if nxt is None:
                continue
            if nxt.topic == "frame":
                skipped += 1
                msg = nxt
            else:
                self._pending.append(nxt)
        msg.skipped = skipped
        self.skipped += skipped
        if self._pending:
            self._pending.append(msg)
            return self._pending.popleft()
        return msg

    def clock_summary(self) -> dict:
        return {ep: self.clocks[s].summary() for ep, s in zip(self.endpoints, self.socks)}

    @property
    def clock_steps(self) -> int:
        """Restarts of the publishers' clock estimates (clock steps, counted per publisher in `clock`)."""
        return sum(c.steps for c in self.clocks.values())

    @property
    def clock_rejected(self) -> int:
        """Messages whose `t` was off their publisher's clock (not used as timing data)."""
        return sum(c.rejected for c in self.clocks.values())

    def counts(self) -> dict:
        return {"received": dict(self.received), "rejected": self.n_rejected,
                "rejected_by_reason": self.rejects.by_reason(), "dropped": self.dropped,
                "restarts": self.restarts, "skipped_frames": self.skipped, "clock": self.clock_summary(),
                "clock_steps": self.clock_steps, "clock_rejected": self.clock_rejected,
                "congested_frames": self.congested_frames, "redials": self.redials}

    @property
    def redials(self) -> int:
        return sum(r.redials for r in self.redialers)

    def close(self) -> None:
        for r in self.redialers:
            r.close()
        for sock in self.socks:
            sock.close()
