"""Open Ephys Event Broadcaster -> the sorted spikes of each completed time bin.

The protocol side of the sorted-spike path; the per-unit binning runs as a stage
(rtdecode.extract.ephys_stages.BinCounts), driven by rtdecode.live.ephys.

`SortedSpikeSource.read()` receives spikes and TTLs (JSON), maps each spike to an input of the
model (per electrode or per sorted unit, `group_by`) and hands out a `SpikeBin` per completed bin:
its spikes' sample numbers and input indices. Bins: `BinGrid` from the sample number of the first
event received; `bin` is the frame number. A bin is complete when an event (spike or TTL) `hold_ms`
past its end arrives (the plugin may send the spikes of one block out of order across electrodes),
or, with `clock_close`, when the local clock says so (so that silent stretches still give bins):
after the last event the sample clock is extrapolated in real time. A bin's time `t` is its end's
sample number on this PC's wall clock, through a minimum-delay estimate of the sample clock over
every event's arrival (rtdecode.sources.clock.ClockOffset), so that it does not jitter with how late
in a processing block, or behind a backlog, the event that closed the bin came. The Event Broadcaster has no
message counter, so lost spikes cannot be detected; spikes arriving after their bin was handed out
are counted under `late_spikes`. Sample numbers far back in time (acquisition restarted) start a
new grid; the frame numbers continue and the unfinished bin is dropped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys.bins import BinGrid
from rtdecode.sources.rejects import WarnEvery

log = logging.getLogger(__name__)

MAX_JUMP_S = 60.0  # sample numbers further ahead than this: the acquisition restarted
MAX_UNKNOWN = 64  # unknown unit names kept by name in the counts


@dataclass
class SpikeBin:
    """The spikes of one completed bin: samples and inputs int64 (n,), in order of arrival."""

    samples: np.ndarray
    inputs: np.ndarray
    bin: int  # frame number
    t: float  # time of the bin's end on the local clock (time.time(); the JSON carries no clock: the sample
    #   clock mapped by a minimum-delay estimate over the events' arrivals)
    received: float  # time.perf_counter() of the event, or the local clock, that showed the bin was over
    bin_start: int
    bin_end: int  # end exclusive
    partial: bool = False  # the last bin when the source ended


class SortedSpikeSource:
    """Sorted spikes from the Event Broadcaster (JSON) -> `SpikeBin`s (see the module doc).

    n_inputs: the model's inputs. group_by: 'electrode' (one input per electrode name) or 'unit' (one
    per electrode and sorted_id, named "ELECTRODE:SORTED_ID"). units: the names in the model's order
    (their number must equal n_inputs); None: inputs are given out in the order the electrodes /
    units first spike (logged), at most n_inputs, so listing them is safer.
    on_reject(reason): called for each event the live path cannot use (e.g. no sample rate).
    """

    name = "Event Broadcaster"

    def __init__(self, host: str, port: int, *, n_inputs: int, bin_ms: float, group_by: str = "electrode",
                 units: list[str] | None = None, stream: str | None = None, hold_ms: float = 30.0,
                 clock_close: bool = True, on_reject=None, context: zmq.Context | None = None):
        if group_by not in ("electrode", "unit"):
            raise ConfigError(f"source.group_by: {group_by!r} is not one of electrode, unit")
        if units is not None:
            if len(units) != n_inputs:
                raise ConfigError(f"source.units lists {len(units)} units but the model card has {n_inputs} "
                                  "neurons; they must be equal")
            if len(set(units)) != len(units):
                raise ConfigError("source.units lists a unit twice")
        self.N = int(n_inputs)
        self.bin_ms = float(bin_ms)
        self.group_by = group_by
        self.fixed_units = units is not None
        self.unit_index: dict[str, int] = {u: i for i, u in enumerate(units or [])}
        self.stream = stream
        self.hold_ms = float(hold_ms)
        self.clock_close = clock_close
        self.on_reject = on_reject or (lambda detail, reason="field": log.warning("%s: rejected (%s): %s", self.name, reason, detail))
        self.client = eb.EventBroadcasterClient(host, port, context=context)
        self.sock = self.client.sock
        self.grid: BinGrid | None = None
        self.base = 0  # frame number of bin 0 of the current grid
        self.open = 0  # the first bin of the grid not handed out yet
        self.pending: dict[int, tuple[list, list]] = {}  # open bin -> (samples, inputs)
        self.fs = 0.0
        self.hold = 0
        self.last_sample: int | None = None
        self.last_local = 0.0  # time.monotonic() of the last event
        self.last_wall = 0.0  # time.time() of the last event
        # the sample clock on this PC's wall clock: a minimum-delay estimate over every event's (sample
        # time, arrival), restarted with the grid; bins' `t` come from it, so they do not jitter with
        # how late (in a processing block, behind a backlog) each event arrived
        self.sample_clock = ClockOffset(name="Event Broadcaster sample clock")
        self.last_data: float | None = None  # time.monotonic() of the last message
        self.dropped_bins = 0
        self.restarts = 0
        self.spikes = 0
        self.late_spikes = 0
        self.unknown_units: Counter[str] = Counter()
        self.other_stream = 0
        self._warn_once = WarnEvery(log)  # at most once a second per kind

    @property
    def max_wait_ms(self) -> int:
        """How long the adapter may wait on the socket before `tick` must run (closing bins by clock)."""
        return max(1, int(self.bin_ms / 2)) if self.clock_close else 100

    # ---------------------------------------------------------------- what the live adapter calls
    def read(self, out: list) -> None:
        """Receive what is waiting (without blocking); append the `SpikeBin`s it completes to `out`."""
        for _ in range(1000):
            ev = self.client.receive(0)
            if ev is None:
                return
            self.last_data = time.monotonic()
            n = len(out)
            self._on_event(ev, time.perf_counter(), out)
            if len(out) > n:
                return

    def tick(self, now: float, out: list) -> None:
        """With `clock_close`, hand out the bins the local clock says are over (only when `out` is empty)."""
        if self.clock_close and self.grid is not None and self.last_sample is not None and not out:
            est = self.last_sample + int((now - self.last_local) * self.fs)
            self._close_until(est - self.hold, time.perf_counter(), out)

    def finish(self, out: list) -> None:
        """The source ended: hand out every bin up to the last event, the last one `partial`."""
        if self.grid is None or self.last_sample is None:
            return
        last = self.grid.index(self.last_sample)
        self._close_until(self.grid.edge(last), time.perf_counter(), out)
        if self.open == last:
            self._hand_out(last, self._wall_at(self.last_sample + 1), time.perf_counter(), out, partial=True,
                           end=self.last_sample + 1)
            self.open += 1

    @property
    def n_rejected(self) -> int:
        return self.client.n_rejected

    def counts(self) -> dict:
        return {"eventbroadcaster": {"received": dict(self.client.received),
                                     "rejected_by_reason": dict(self.client.rejected)},
                "spikes": self.spikes, "late_spikes": self.late_spikes,
                "unknown_units": dict(self.unknown_units), "other_stream": self.other_stream,
                "units": sorted(self.unit_index, key=self.unit_index.get)}

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------------- events -> bins
    def _unit(self, sp: eb.BroadcastSpike) -> int | None:
        key = sp.electrode if self.group_by == "electrode" else f"{sp.electrode}:{sp.sorted_id}"
        i = self.unit_index.get(key)
        if i is None and not self.fixed_units and len(self.unit_index) < self.N:
            i = self.unit_index[key] = len(self.unit_index)
            log.info("%s: %s %r is input %d (order of first spike; list source.units to fix it)",
                     self.name, self.group_by, key, i)
        if i is None:
            # counted by name for the first MAX_UNKNOWN names only: names are the sender's text
            name = key if key in self.unknown_units or len(self.unknown_units) < MAX_UNKNOWN else "(other names)"
            self.unknown_units[name] += 1
            self._warn_once("unit", "%s: spikes of %s %r are not among the model's %d inputs: ignored",
                            self.name, self.group_by, key, self.N)
        return i

    def _on_event(self, ev, received: float, out: list) -> None:
        if self.stream is None:
            self.stream = ev.stream
        elif ev.stream != self.stream:
            self.other_stream += 1
            return
        s = ev.sample_number
        back = (self.last_sample is not None and s < self.last_sample - 10 * self.hold - 1
                and self.grid.index(s) < self.open)
        # A jump forward of more than MAX_JUMP_S is a restart too, never a run of empty bins to hand
        # out one by one (a hostile or corrupt sample_number of 2**62 would never end).
        ahead = self.last_sample is not None and s > self.last_sample + MAX_JUMP_S * self.fs
        if self.grid is None or back or ahead:
            if ev.sample_rate <= 0:
                self.on_reject(f"{type(ev).__name__}: sample_rate {ev.sample_rate} is not positive")
                return
            if self.grid is not None:  # far back in time: the acquisition restarted
                self.restarts += 1
                if self.pending:
                    self.dropped_bins += 1
                    self.open = max(self.pending) + 1
                self.pending.clear()
                self._warn_once("restart", "%s: sample numbers jumped %s to %d (acquisition restarted)", self.name,
                                "back" if back else "forward", s)
                self.base += self.open
            self.fs = ev.sample_rate
            self.sample_clock = ClockOffset(name="Event Broadcaster sample clock")
            self.hold = round(self.hold_ms * 1e-3 * self.fs)
            self.grid = BinGrid(s, self.bin_ms * 1e-3 * self.fs)
            self.open = 0
            self.last_sample = None
        self.sample_clock.see(s / self.fs, time.time() - (time.perf_counter() - received))
        if self.last_sample is None or s > self.last_sample:
            self.last_sample = s
            self.last_local, self.last_wall = time.monotonic(), time.time()
        if isinstance(ev, eb.BroadcastSpike):
            k = self.grid.index(s)
            if k < self.open:
                self.late_spikes += 1
                self._warn_once("late", "%s: a spike at sample %d came after its bin was closed (%d late so far)",
                                self.name, s, self.late_spikes)
            else:
                i = self._unit(ev)
                if i is not None:
                    self.spikes += 1
                    samples, inputs = self.pending.setdefault(k, ([], []))
                    samples.append(s)
                    inputs.append(i)
        self._close_until(self.last_sample - self.hold, received, out)

    def _close_until(self, horizon: int, received: float, out: list) -> None:
        """Hand out every bin that ends at or before sample `horizon`."""
        g = self.grid
        while g.edge(self.open + 1) <= horizon:
            k = self.open
            e = g.edge(k + 1)
            self._hand_out(k, self._wall_at(e), received, out)
            self.open += 1

    def _wall_at(self, sample: int) -> float:
        """This PC's wall time (time.time()) of `sample`: the sample clock's minimum-delay mapping, or,
        before it has one, the last event's arrival moved back by the samples between."""
        t = self.sample_clock.local(sample / self.fs)
        return t if t is not None else self.last_wall - (self.last_sample - sample) / self.fs

    def _hand_out(self, k: int, t: float, received: float, out: list, partial: bool = False,
                  end: int | None = None) -> None:
        samples, inputs = self.pending.pop(k, ((), ()))
        g = self.grid
        out.append(SpikeBin(np.array(samples, np.int64), np.array(inputs, np.int64), self.base + k, t, received,
                            g.edge(k), g.edge(k + 1) if end is None else int(end), partial))
