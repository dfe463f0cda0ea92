"""Rejected-message accounting shared by every message source.

A message that cannot be used is counted under one of a fixed set of reasons (`REASONS`), never
under text the sender chose, so a hostile sender cannot grow the counts, the stats message or the
log: `Rejects.reject(reason, detail)` adds one to `counts[reason]` (an unknown reason is counted as
'other') and logs the detail, truncated, at most `burst` times per reason, then at most once per
`every_s` seconds per reason, and never more than `max_lines` lines per reason in all. The counts of
every source go into the live stats under `rejected_by_reason`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

log = logging.getLogger(__name__)

REASONS = (
    "framing",        # wrong number of message parts, or a part of the wrong size
    "too_large",      # a header or payload over its size limit
    "not_utf8",       # a header or topic that is not UTF-8 / ASCII
    "too_deep",       # JSON nested deeper than the limit (refused before parsing)
    "not_json",       # a header that is not JSON, or not a JSON object
    "topic",          # an unknown topic, envelope or event type
    "version",        # a protocol version this reader does not speak
    "field",          # a header field missing, of the wrong type, or out of range
    "shape",          # a shape with too many dimensions or absurd sizes
    "dtype",          # a dtype that is not allowed
    "payload",        # a payload whose size disagrees with the header
    "source",         # a message from a publisher that may not send it (e.g. 'end' not from the source)
    "limit",          # a bounded table is full (Open Ephys streams, channels)
    "stale",          # a message too old to be used
    "internal",       # processing the message raised an unexpected error (a bug; counted, not fatal)
    "other",
)

MAX_DETAIL = 200


class Rejects:
    """Counts of rejected messages by reason, with a bounded, rate-limited log."""

    def __init__(self, name: str, burst: int = 5, every_s: float = 60.0, max_lines: int = 100,
                 logger: logging.Logger | None = None):
        self.name = name
        self.counts: Counter[str] = Counter()
        self.burst, self.every_s, self.max_lines = burst, every_s, max_lines
        self.log = logger or log
        self._lines: Counter[str] = Counter()
        self._last: dict[str, float] = {}

    def reject(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            reason = "other"
        self.counts[reason] += 1
        n = self._lines[reason]
        if n >= self.max_lines:
            return
        now = time.monotonic()
        if n >= self.burst and now - self._last.get(reason, -1e18) < self.every_s:
            return
        self._lines[reason] = n + 1
        self._last[reason] = now
        text = str(detail)
        if len(text) > MAX_DETAIL:
            text = text[:MAX_DETAIL] + "..."
        last = " (last line logged for this reason)" if n + 1 == self.max_lines else ""
        self.log.warning("%s: rejected message, %s (%d so far): %s%s", self.name, reason, self.counts[reason],
                         text, last)

    def error(self, exc: BaseException) -> None:
        """Count an exception: its `reason` attribute if it has one (WireError), else 'internal'."""
        self.reject(getattr(exc, "reason", "internal"), f"{type(exc).__name__}: {exc}")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def by_reason(self) -> dict:
        return dict(self.counts)


class WarnEvery:
    """A warning logged at most once per `every_s` seconds per key, for conditions that are not
    rejected messages (gaps, late events); keys are our own fixed names, never sender text."""

    def __init__(self, logger: logging.Logger, every_s: float = 1.0):
        self.log, self.every_s = logger, every_s
        self._last: dict[str, float] = {}

    def __call__(self, key: str, fmt: str, *args) -> None:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) > self.every_s:
            self._last[key] = now
            self.log.warning(fmt, *args)
