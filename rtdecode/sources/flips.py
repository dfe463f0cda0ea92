"""Hardware flip times: TTL edges (a photodiode, or the stimulus PC's frame-clock output) say WHEN a
stimulus frame reached the screen; the stimulus PC's `stim` messages say WHICH frame it was.

Rig file: `stimulus: {flip_times: ttl, ttl: {address: tcp://HOST:5557, line: 1}}` (rtdecode.live.config).
`TtlFlips` subscribes to the Open Ephys Event Broadcaster (JSON output; the client and parser are
rtdecode.sources.openephys.event_broadcaster) and keeps the edges on one TTL line (`edges`: rising,
or both for a photodiode patch that alternates black and white each flip). The broadcaster carries
no wall time, only `sample_number` at `sample_rate`: `sample_number / sample_rate` is taken as the
sender's clock and mapped onto this PC's wall clock by a ClockOffset of its own (the minimum-delay
filter, rtdecode.sources.clock: the residual error is the bare one-way transport, ~0.1 ms on a LAN).
A sample clock that goes back (the GUI restarted acquisition) starts a fresh estimate.

`FlipAligner` (pure logic, bounded memory) pairs them. Times are local wall times (time.time()):
a stim message's is its clock-corrected sender time, an edge's as above. The pending stims are
paired in order: each with the first edge within `tolerance_s` of `stim + latency` (a window
narrower than a stimulus frame, so it holds one edge unless the line glitched), where
`latency` is the median of the recent pairs (the display latency). Before any pair (or after
`reset_after` stims in a row found none) the latency is unknown: a stim is paired with the first
edge in [stim - tolerance_s, stim + max_latency_s], but only after a pause, i.e. when no edge came in
the `max_latency_s` before it and the aligner was listening then (otherwise an edge of an earlier
stim, e.g. one sent before rtdecode subscribed, could be taken when the latency exceeds one
stimulus frame). A stim whose window passed (plus `grace_s` for the edge's transport) without an
edge is resolved at its own time and counted in `flips_unmatched`; an edge no stim takes is counted
in `edges_unmatched`. Resolved stims come out of `resolve(now)` in order, at their flip time.

Stats: `flips_matched`, `flips_unmatched`, `edges_unmatched`, `display_latency_ms` (p50 / p99 of
edge - corrected sender time over the last `keep_latencies` pairs: the stimulus PC's measured
display latency, plus the residual transport error of the two clocks).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque

import numpy as np
import zmq

from rtdecode.sources.address import split_endpoint
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.openephys.event_broadcaster import BroadcastTtl, EventBroadcasterClient

log = logging.getLogger(__name__)

EDGES = ("rising", "both")


class FlipAligner:
    """Pairs stim messages (which frame) with TTL edges (when); see the module doc."""

    def __init__(self, tolerance_s: float = 0.008, max_latency_s: float = 0.1, grace_s: float = 0.02,
                 keep: int = 256, reset_after: int = 8, keep_latencies: int = 10000, started: float | None = None):
        if not (tolerance_s > 0 and max_latency_s > 0 and grace_s >= 0 and keep >= 1 and reset_after >= 1):
            raise ValueError(f"FlipAligner: tolerance_s {tolerance_s}, max_latency_s {max_latency_s} must be > 0, "
                             f"grace_s {grace_s} >= 0, keep {keep} and reset_after {reset_after} >= 1")
        self.tolerance, self.max_latency, self.grace = tolerance_s, max_latency_s, grace_s
        self.keep, self.reset_after = keep, reset_after
        self.started = time.time() if started is None else started
        self.stims: deque[tuple[float, object]] = deque()  # pending (local time, id), at most `keep`
        self.edges: deque[float] = deque()  # edges not yet paired, sorted, at most `keep`
        self.recent: deque[float] = deque(maxlen=16)  # latencies of the last pairs: the expected one
        self.latencies: deque[float] = deque(maxlen=keep_latencies)  # for the stats
        self._out: list[tuple[float, object, bool]] = []  # resolved, not yet handed out
        self._edge_floor: float | None = None  # the newest edge taken out of `edges`
        self._misses = 0  # stims in a row without an edge
        self.flips_matched = self.flips_unmatched = self.edges_unmatched = 0

    @property
    def latency(self) -> float | None:
        """The expected display latency (s): the median of the recent pairs; None until known."""
        return float(np.median(self.recent)) if self.recent else None

    def add_stim(self, t: float, ident) -> None:
        """A stim message at local time `t` (its corrected sender time); `ident` is handed back."""
        if len(self.stims) >= self.keep:  # no edges for a long while: let the oldest go at its own time
            self._resolve(*self.stims.popleft(), None)
        self.stims.append((float(t), ident))

    def add_edge(self, t: float) -> None:
        """A TTL edge at local time `t`."""
        t = float(t)
        if not math.isfinite(t):
            return
        if len(self.edges) >= self.keep:
            self._drop_edge()
        if self.edges and t < self.edges[-1]:  # out of order: keep the deque sorted
            i = len(self.edges)
            while i > 0 and self.edges[i - 1] > t:
                i -= 1
            self.edges.insert(i, t)
        else:
            self.edges.append(t)

    def _drop_edge(self) -> None:
        self._edge_floor = self.edges.popleft()
        self.edges_unmatched += 1

    def _resolve(self, t: float, ident, edge: float | None) -> None:
        if edge is None:
            self.flips_unmatched += 1
            self._misses += 1
            if self._misses >= self.reset_after:
                self.recent.clear()  # the latency changed, or the pairing was lost: find it again
            self._out.append((t, ident, False))
            return
        self.flips_matched += 1
        self._misses = 0
        self.recent.append(edge - t)
        self.latencies.append(edge - t)
        self._out.append((edge, ident, True))

    def resolve(self, now: float) -> list[tuple[float, object, bool]]:
        """Pair what can be paired by local time `now`; returns the stims resolved since the last
        call, in order: (flip time, ident, matched), the flip time being the edge's or, unmatched,
        the stim's own."""
        while self.stims:
            st, ident = self.stims[0]
            lat = self.latency
            if lat is None:
                lo, hi = st - self.tolerance, st + self.max_latency
            else:
                lo, hi = st + lat - self.tolerance, st + lat + self.tolerance
            while self.edges and self.edges[0] < lo:  # before every pending stim's window: no stim takes it
                self._drop_edge()
            cands = []
            for e in self.edges:
                if e > hi:
                    break
                cands.append(e)
            past = len(cands) < len(self.edges) or now > hi + self.grace  # no nearer edge can still come
            edge = None
            if lat is None:
                after_pause = (st - self.max_latency >= self.started
                               and (self._edge_floor is None or self._edge_floor < st - self.max_latency))
                if cands and after_pause:
                    edge = cands[0]
                elif not past:
                    return self._hand_out()
            elif cands:  # the window is narrower than a stimulus frame: the first edge in it is the one
                edge = cands[0]
            elif not past:
                return self._hand_out()
            self.stims.popleft()
            if edge is not None:
                while self.edges[0] != edge:  # edges before the one taken: no stim takes them
                    self._drop_edge()
                self._edge_floor = self.edges.popleft()
            self._resolve(st, ident, edge)
        # nothing pending: an edge too old for any stim still to come is unmatched
        while self.edges and self.edges[0] < now - self.max_latency - self.grace - self.tolerance:
            self._drop_edge()
        return self._hand_out()

    def _hand_out(self) -> list[tuple[float, object, bool]]:
        out, self._out = self._out, []
        return out

    def stats(self) -> dict:
        lat = np.asarray(self.latencies, np.float64)
        return {"flips_matched": self.flips_matched, "flips_unmatched": self.flips_unmatched,
                "edges_unmatched": self.edges_unmatched, "flips_pending": len(self.stims),
                "display_latency_ms": {
                    "p50": round(float(np.percentile(lat, 50)) * 1e3, 3) if lat.size else None,
                    "p99": round(float(np.percentile(lat, 99)) * 1e3, 3) if lat.size else None,
                    "n": int(lat.size)}}


class TtlFlips:
    """TTL edges on one line of an Open Ephys Event Broadcaster -> `aligner.add_edge(local time)`.

    `poll()` reads what has arrived without waiting (call it often: the arrival time feeds the
    clock estimate); a malformed message is counted (the client's Rejects), never raised."""

    def __init__(self, address: str, line: int, aligner: FlipAligner, edges: str = "rising",
                 context: zmq.Context | None = None):
        if edges not in EDGES:
            raise ValueError(f"edges {edges!r}; valid: {', '.join(EDGES)}")
        host, port = split_endpoint(address)
        self.address, self.line, self.edges, self.aligner = address, int(line), edges, aligner
        self.client = EventBroadcasterClient(host, port, context=context)
        self.rejects = self.client.rejects
        self.clock = ClockOffset()
        self.ignored: Counter[str] = Counter()  # events not used: other lines, spikes, falling edges
        self.restarts = 0  # the sample clock went back (a new acquisition): a fresh clock estimate
        self._last: float | None = None

    def poll(self, max_events: int = 1000) -> int:
        """Read the events already queued (at most `max_events`); returns the edges added."""
        n = 0
        for _ in range(max_events):
            try:
                ev = self.client.receive(timeout_ms=0)
            except Exception as exc:  # noqa: BLE001 -- the live loop never dies on a TTL message
                self.rejects.reject("internal", f"TTL input: {type(exc).__name__}: {exc}")
                break
            if ev is None:
                break
            wall = time.time()
            if not isinstance(ev, BroadcastTtl):
                self.ignored["spike"] += 1
                continue
            if ev.line != self.line:
                self.ignored["other_line"] += 1
                continue
            t = ev.sample_number / ev.sample_rate  # the sender's clock: seconds of its sample counter
            if self._last is not None and t < self._last:
                self.restarts += 1
                self.clock = ClockOffset()
                log.warning("TTL input %s: the sample clock went back (%d restart(s)); estimating its offset afresh",
                            self.address, self.restarts)
            self._last = t
            on_clock = self.clock.see(t, wall) is not None
            if not ev.state and self.edges == "rising":
                self.ignored["falling"] += 1
                continue
            self.aligner.add_edge(self.clock.local(t) if on_clock else wall)  # off the clock: its arrival
            n += 1
        return n

    def stats(self) -> dict:
        return {"address": self.address, "line": self.line + 1, "edges": self.edges, **self.aligner.stats(),
                "clock": self.clock.summary(), "received": dict(self.client.received),
                "ignored": dict(self.ignored), "rejected_by_reason": self.rejects.by_reason(),
                "clock_restarts": self.restarts}

    def close(self) -> None:
        self.client.close()
