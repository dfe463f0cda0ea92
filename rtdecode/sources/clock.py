"""Where a publisher's clock stands against ours: a minimum-delay offset estimate with a long-term
floor that no backlog can raise, and clock steps counted as restarts of that publisher's clock.

Every message carries `t`, the sender's clock at acquisition (or send). Its delay as we see it,
`d = local_wall_at_receive - t`, is the clock offset plus transport plus any queueing. The estimate
of offset + bare transport is the smallest delay seen (NTP's minimum filter): the *floor*. A
message's time in the queues is `d - floor` (its `excess`), and the ingest maps its acquisition time
onto time.perf_counter() with it.

Never absorbing a backlog (issue 27, class 1): a windowed minimum forgets the unqueued delays after
its window, so an overload longer than the window made queueing look like clock offset and stale
frames look fresh. Here the floor moves only
- down, at once, to any smaller delay within `jump_s` of it (better transport, a clock that drifts fast);
- up by at most `max_drift` seconds per second since it was last reached (a sender clock that runs
  slow: 100 ppm is ten times a common crystal's drift), so a backlog of 1 s would take 10^4 s to
  creep in;
- up to a new level when, for a whole `window_s`, no message read off an empty queue (`queued`
  False: nothing waiting behind it on our socket) came within `jump_s` of it: a small clock step
  back. Messages read with others queued behind them never feed this, so an overload at our socket
  never moves the floor up.

Clock steps (issue 27, class 2): a message more than `jump_s` ahead of the floor (a `t` from the
future: d below the floor), or whose `t` goes back by more than `jump_s` from the previous one (a
clock stepped back), is *off the clock*: it is rejected as timing data (`see` returns None, counted
in `rejected`; the caller stamps it with this PC's arrival time and fires no trigger on it). When
`confirm` such messages in a row agree with each other (within `confirm_tol_s`), the publisher's
clock has stepped: the estimate restarts from them (`steps`, logged, a bounded number of lines). One
bad timestamp is thus never data, and a real step costs `confirm` messages.

Common clock: `local(t)` = `t + min_delay` puts a sender time on this PC's wall clock (time.time()).
The offset cancels exactly; what remains is the bare one-way transport in `min_delay` (~0.1 ms on a
LAN, more over Wi-Fi or a loaded switch): that is the residual error when times of two publishers
are compared (the live loop matches stimulus frames to imaging frames so).

Reported: `offset_ms` (the floor: offset + bare transport), `jitter_ms` (smoothed mean of the
excess: transport variance and queueing), `n`, `steps` (clock restarts, small re-anchorings
included) and `rejected` (messages off the clock). The estimate is per publisher: two machines'
clocks are never mixed.

Limit: a backlog upstream of our socket (the sender's own queue behind a saturated network link)
shows as messages read off an empty queue; one that lasts over `window_s` is taken for a clock step
back at the end of the window.
"""

from __future__ import annotations

import logging
import math

log = logging.getLogger(__name__)

LOG_FIRST = 10  # clock steps logged one by one; after that, every LOG_EVERY-th
LOG_EVERY = 1000


class ClockOffset:
    def __init__(self, window_s: float = 60.0, smoothing: float = 0.05, max_drift: float = 1e-4,
                 jump_s: float = 0.02, confirm: int = 3, confirm_tol_s: float = 0.25, name: str = "publisher"):
        self.window_s = window_s
        self.smoothing = smoothing
        self.max_drift = max_drift
        self.jump_s = jump_s
        self.confirm = confirm
        self.confirm_tol_s = confirm_tol_s
        self.name = name
        self._floor: float | None = None  # the smallest delay (s) ...
        self._floor_wall = 0.0  # ... and the local wall time it was last reached
        self._wall = 0.0  # local wall time of the latest message
        self._last_t: float | None = None  # the sender's t of the latest message accepted
        self._pending: list[float] = []  # delays of the messages off the clock, in a row
        self._above_since: float | None = None  # since when every unqueued message is above the floor
        self._above_min = math.inf  # their smallest delay
        self.jitter = 0.0
        self.n = 0
        self.steps = 0
        self.rejected = 0

    @property
    def min_delay(self) -> float | None:
        """The estimate at the latest message: the floor, risen by at most `max_drift` per second
        since it was last reached (None before any message)."""
        if self._floor is None:
            return None
        return self._floor + self.max_drift * max(0.0, self._wall - self._floor_wall)

    def see(self, sender_t: float, local_wall: float, queued: bool = False) -> float | None:
        """Record one message; returns its queueing/transport excess `d - min_delay` (>= 0, s), or
        None when it is off this publisher's clock (a `t` far ahead, a clock stepped back; not
        confirmed yet): its time is then unknown. `queued`: other messages were waiting behind it."""
        d = local_wall - sender_t
        if not math.isfinite(d):
            self.rejected += 1
            return None
        self._wall = local_wall
        if self._floor is None:
            self._restart(d, local_wall, sender_t)
            return self._excess(d)
        confirmed = False
        if self._pending:
            if abs(d - self._pending[0]) <= self.confirm_tol_s:
                self._pending.append(d)
                if len(self._pending) < self.confirm:
                    self.rejected += 1
                    return None
                self._step(min(self._pending), local_wall, sender_t, "its clock stepped")
                confirmed = True
            else:  # back on the clock: the messages before were one-off bad timestamps
                self._pending = []
        if not confirmed and (d < self.min_delay - self.jump_s
                              or (self._last_t is not None and sender_t < self._last_t - self.jump_s)):
            self._pending = [d]
            self.rejected += 1
            return None
        self._last_t = sender_t
        if d <= self.min_delay:
            self._floor, self._floor_wall = d, local_wall
        if not queued:
            self._watch_above(d, local_wall, sender_t)
        return self._excess(d)

    def _excess(self, d: float) -> float:
        excess = max(0.0, d - self.min_delay)
        self.jitter = self.jitter + self.smoothing * (excess - self.jitter) if self.n else excess
        self.n += 1
        return excess

    def _watch_above(self, d: float, local_wall: float, sender_t: float) -> None:
        """A message read off an empty queue: if none came within `jump_s` of the floor for a whole
        window, the sender's clock stepped back by less than a jump: re-anchor the floor."""
        if d <= self.min_delay + self.jump_s:
            self._above_since, self._above_min = None, math.inf
            return
        if self._above_since is None:
            self._above_since = local_wall
        self._above_min = min(self._above_min, d)
        if local_wall - self._above_since >= self.window_s:
            self._step(self._above_min, local_wall, sender_t, f"no unqueued message at its floor for {self.window_s:.0f} s")

    def _restart(self, d: float, local_wall: float, sender_t: float) -> None:
        self._floor, self._floor_wall, self._last_t = d, local_wall, sender_t
        self._pending = []
        self._above_since, self._above_min = None, math.inf

    def _step(self, d: float, local_wall: float, sender_t: float, why: str) -> None:
        before = self.min_delay
        self._restart(d, local_wall, sender_t)
        self.steps += 1
        if self.steps <= LOG_FIRST or self.steps % LOG_EVERY == 0:
            log.warning("%s: clock offset estimate restarted (%s): %.3f s -> %.3f s (%d step(s) so far)",
                        self.name, why, before, d, self.steps)

    def creep(self) -> float:
        """How far `min_delay` has risen above the floor since the floor was last reached, s: the
        most by which a message's acquisition time may be late (0 before any message)."""
        if self._floor is None:
            return 0.0
        return self.max_drift * max(0.0, self._wall - self._floor_wall)

    def local(self, sender_t: float) -> float | None:
        """`sender_t` on this PC's wall clock: sender_t + min_delay (None before any message)."""
        m = self.min_delay
        return None if m is None else sender_t + m

    def summary(self) -> dict:
        m = self.min_delay
        if m is None:
            return {"offset_ms": None, "jitter_ms": None, "n": 0, "steps": 0, "rejected": self.rejected}
        return {"offset_ms": round(m * 1e3, 4), "jitter_ms": round(self.jitter * 1e3, 4), "n": self.n,
                "steps": self.steps, "rejected": self.rejected}

