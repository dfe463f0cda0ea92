"""Where a publisher's clock stands against ours: a running minimum-delay offset estimate.

Every message carries `t`, the sender's clock at acquisition (or send). Its delay as we see it,
`d = local_wall_at_receive - t`, is the clock offset plus transport plus any queueing. The smallest
delay seen is the best estimate of offset + bare transport (NTP's minimum filter); it is aged by
`drift_s_per_s` per second (10 ppm by default, more than NTP-disciplined clocks drift) so that a clock
that drifts, or a too-small first sample, does not hold it forever. A message's time in a queue is
`d - min_delay`: `acquired_local(received)` maps its acquisition time onto time.perf_counter().

Reported: `offset_ms` (the minimum delay: offset + bare transport), `jitter_ms` (smoothed mean of
`d - min_delay`, i.e. transport variance and queueing), `n`. The estimate is per publisher: two
machines' clocks are never mixed.
"""

from __future__ import annotations

import math


class ClockOffset:
    def __init__(self, drift_s_per_s: float = 1e-5, smoothing: float = 0.05):
        self.drift = drift_s_per_s
        self.smoothing = smoothing
        self.min_delay: float | None = None
        self._at: float = 0.0  # local wall time when min_delay was last updated or aged
        self.jitter = 0.0
        self.n = 0

    def see(self, sender_t: float, local_wall: float) -> float:
        """Record one message; returns its queueing/transport excess `d - min_delay` (>= 0, s)."""
        d = local_wall - sender_t
        if not math.isfinite(d):
            return 0.0
        if self.min_delay is None:
            self.min_delay, self._at = d, local_wall
        else:
            aged = self.min_delay + self.drift * max(0.0, local_wall - self._at)
            self.min_delay, self._at = (d, local_wall) if d <= aged else (aged, local_wall)
        excess = max(0.0, d - self.min_delay)
        self.jitter += self.smoothing * (excess - self.jitter) if self.n else excess
        self.n += 1
        return excess

    def summary(self) -> dict:
        if self.min_delay is None:
            return {"offset_ms": None, "jitter_ms": None, "n": 0}
        return {"offset_ms": round(self.min_delay * 1e3, 4), "jitter_ms": round(self.jitter * 1e3, 4), "n": self.n}
