"""The trigger engine: rules evaluated on every decoded frame, events to the sinks, fail-safe.

Fail safe: when the pipeline falls behind (a frame's processing latency above `max_lag_s`) or a
stage errors, triggers are disabled and stay disabled until `enable()`; the stats say why. Events
are never dropped: fast sinks fire on the live thread, slow ones through a queue on a worker thread,
and every event is recorded. When slow sinks fall behind (`max_pending` events waiting), triggers are
disabled too (the queued events are still delivered), so the queue stays bounded and no trigger goes
out late.

Freshness: a trigger never fires on a frame older than `max_age_s` since its acquisition (the
caller passes the acquisition time, clock-corrected, on time.perf_counter()'s clock), nor on one the
caller marks with a `suppress` reason: 'clock' (its `t` was off its publisher's clock, so its age is
unknown) or 'congested' (the ingest was at its high-water mark or dropping). The rules are still
evaluated, so their state stays right, but what they would have fired is suppressed: counted
(`suppressed_stale`, `suppressed_clock`, `suppressed_congested`) and recorded with `suppressed:
REASON` and the frame's age; a suppressed firing does not start the rule's refractory period. These
suppressions last only as long as their cause, unlike `disable()`.

Rules run their refractory periods on this PC's time.monotonic(), never on the sender's `t`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter

import numpy as np

from rtdecode.latency import Histogram

log = logging.getLogger(__name__)

SUPPRESS_REASONS = ("stale", "clock", "congested")


class TriggerEngine:
    """`rules` fire into `sinks`, or into a rule's own `rule.sinks` when it has them (a rig file maps
    each rule to one output)."""

    def __init__(self, rules: list, sinks: list, max_lag_s: float = 0.1, record=None, max_pending: int = 100):
        self.rules, self.max_lag_s, self.record = rules, max_lag_s, record
        self.max_pending = max_pending
        self.max_pending_seen = 0
        self.fast = [s for s in sinks if not s.slow]
        self.slow = [s for s in sinks if s.slow]
        self.enabled = True
        self.disabled_reason: str | None = None
        self.fired = 0
        self.sink_failures = 0
        self.to_wire = Histogram()  # decoded frame ready -> trigger sent by the fast sinks
        self.from_acquisition = Histogram()  # frame acquired -> trigger sent by the fast sinks
        self.stale_frames = 0  # frames older than max_age_s when decoded
        self.suppressed_frames: Counter[str] = Counter()  # frames on which nothing may fire, by reason
        self.suppressed: Counter[str] = Counter()  # triggers not sent, by reason ('stale', 'clock', 'congested')
        self._queue: queue.Queue = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="triggers", daemon=True)
        self._has_slow = bool(self.slow) or any(s.slow for r in rules for s in (r.sinks or ()))
        if self._has_slow:
            self._worker.start()

    def disable(self, reason: str) -> None:
        if self.enabled:
            log.error("triggers disabled: %s", reason)
        self.enabled, self.disabled_reason = False, reason

    def enable(self) -> None:
        self.enabled, self.disabled_reason = True, None
        for r in self.rules:
            r.reset()

    @property
    def suppressed_stale(self) -> int:
        return self.suppressed["stale"]

    def on_decoded(self, image: np.ndarray, t: float, lag_s: float, ready: float, acquired: float | None = None,
                   max_age_s: float | None = None, suppress: str | None = None, age_margin: float = 0.0,
                   **context) -> int:
        """Evaluate the rules on a decoded frame `image` (H, W) for stimulus time `t` (the sender's,
        only recorded); `context` (trial, frame, ...) goes into every event; `ready` is
        time.perf_counter() when it was ready; `acquired` (same clock) when the newest frame behind it
        was acquired: older than `max_age_s`, nothing fires; nor with a `suppress` reason ('clock',
        'congested'). `age_margin` (s): how much older the frame may be than `acquired` says (the clock
        estimate's creep); the age checked against `max_age_s` includes it. Returns the number of
        triggers fired."""
        now = time.monotonic()
        age = None if acquired is None else time.perf_counter() - acquired + max(age_margin, 0.0)
        reason = suppress  # the cause, when the caller knows it, before its symptom (staleness)
        if age is not None and max_age_s is not None and age > max_age_s:
            self.stale_frames += 1
            reason = reason or "stale"
        if reason is not None:
            self.suppressed_frames[reason] += 1
            if self.enabled:
                for rule in self.rules:
                    if rule.update(image, now, fire=False):
                        self.suppressed[reason] += 1
                        if self.record is not None:
                            self.record({"rule": rule.name, "score": rule.last_score, "t_frame": t, "t": time.time(),
                                         "suppressed": reason, "age_ms": None if age is None else round(age * 1e3, 3),
                                         "max_age_ms": None if max_age_s is None else round(max_age_s * 1e3, 3),
                                         **context})
            return 0
        if lag_s > self.max_lag_s:
            self.disable(f"pipeline behind: a frame took {lag_s * 1e3:.1f} ms (limit {self.max_lag_s * 1e3:.0f} ms)")
        if self._has_slow and self._queue.qsize() >= self.max_pending:
            self.disable(f"trigger sinks behind: {self._queue.qsize()} events pending (limit {self.max_pending})")
        if not self.enabled:
            return 0
        n = 0
        for rule in self.rules:
            if not rule.update(image, now):
                continue
            event = {"rule": rule.name, "score": rule.last_score, "t_frame": t, "t": time.time(), **context}
            fast, slow = (self.fast, self.slow) if rule.sinks is None else (
                [s for s in rule.sinks if not s.slow], [s for s in rule.sinks if s.slow])
            for sink in fast:
                self._fire(sink, event)
            sent = time.perf_counter()
            self.to_wire.add(sent - ready)
            if acquired is not None:
                self.from_acquisition.add(max(sent - acquired, 0.0))
            if slow:
                self._queue.put((event, slow))
                self.max_pending_seen = max(self.max_pending_seen, self._queue.qsize())
            if self.record is not None:
                self.record(event)
            self.fired += 1
            n += 1
        return n

    def _fire(self, sink, event) -> None:
        try:
            ok = sink.fire(event)
        except Exception as exc:  # a sink that raises must not take the live loop down
            ok = False
            log.error("trigger sink %s failed: %s", type(sink).__name__, exc)
        if not ok:
            self.sink_failures += 1

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            event, sinks = item
            for sink in sinks:
                self._fire(sink, event)

    def stats(self) -> dict:
        return {"enabled": self.enabled, "disabled_reason": self.disabled_reason, "fired": self.fired,
                "sink_failures": self.sink_failures, "pending": self._queue.qsize(),
                "pending_max": self.max_pending_seen,
                "to_wire_ms": self.to_wire.summary_ms(), "acquired_to_trigger_ms": self.from_acquisition.summary_ms(),
                "stale_frames": self.stale_frames, "suppressed_stale": self.suppressed["stale"],
                "suppressed_clock": self.suppressed["clock"], "suppressed_congested": self.suppressed["congested"],
                "suppressed_frames": {k: self.suppressed_frames[k] for k in SUPPRESS_REASONS}}

    def close(self) -> None:
        if self._has_slow:
            self._queue.put(None)
            self._worker.join(timeout=5)
