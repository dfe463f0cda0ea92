"""Where a publisher's clock stands against ours: a windowed minimum-delay offset estimate.

Every message carries `t`, the sender's clock at acquisition (or send). Its delay as we see it,
`d = local_wall_at_receive - t`, is the clock offset plus transport plus any queueing. The smallest
delay seen over the last `window_s` (two half-window buckets, constant memory) is the estimate of
offset + bare transport (NTP's minimum filter); a message's time in the queues is `d - min_delay`,
and the ingest maps its acquisition time onto time.perf_counter() with it. The window lets the
estimate follow clock drift and steps: a sender clock that steps back shows as queueing (triggers
fail safe: suppressed as stale) for at most `window_s`; one that steps forward is followed at once.
A backlog that lasts longer than the window would be hidden after it: the socket's small
high-water mark and the 'latest' freshness policy keep backlogs far shorter.

Common clock: `local(t)` = `t + min_delay` puts a sender time on this PC's wall clock
(time.time()). The offset cancels exactly; what remains is the bare one-way transport in
`min_delay` (~0.1 ms on a LAN, more over Wi-Fi or a loaded switch): that is the residual error when
times of two publishers are compared (the live loop matches stimulus frames to imaging frames so).

Reported: `offset_ms` (the minimum delay: offset + bare transport), `jitter_ms` (smoothed mean of
`d - min_delay`: transport variance and queueing), `n`. The estimate is per publisher: two machines'
clocks are never mixed.
"""

from __future__ import annotations

import math


class ClockOffset:
    def __init__(self, window_s: float = 60.0, smoothing: float = 0.05):
        self.half = window_s / 2
        self.smoothing = smoothing
        self._cur: float | None = None  # minimum of the current half-window
        self._prev: float | None = None  # minimum of the previous one
        self._started = 0.0  # local wall time the current half-window started
        self.jitter = 0.0
        self.n = 0

    @property
    def min_delay(self) -> float | None:
        vals = [v for v in (self._cur, self._prev) if v is not None]
        return min(vals) if vals else None

    def see(self, sender_t: float, local_wall: float) -> float:
        """Record one message; returns its queueing/transport excess `d - min_delay` (>= 0, s)."""
        d = local_wall - sender_t
        if not math.isfinite(d):
            return 0.0
        if self._cur is None or local_wall - self._started >= self.half:
            self._prev, self._cur, self._started = self._cur, d, local_wall
        else:
            self._cur = min(self._cur, d)
        excess = max(0.0, d - self.min_delay)
        self.jitter = self.jitter + self.smoothing * (excess - self.jitter) if self.n else excess
        self.n += 1
        return excess

    def local(self, sender_t: float) -> float | None:
        """`sender_t` on this PC's wall clock: sender_t + min_delay (None before any message)."""
        m = self.min_delay
        return None if m is None else sender_t + m

    def summary(self) -> dict:
        m = self.min_delay
        if m is None:
            return {"offset_ms": None, "jitter_ms": None, "n": 0}
        return {"offset_ms": round(m * 1e3, 4), "jitter_ms": round(self.jitter * 1e3, 4), "n": self.n}
