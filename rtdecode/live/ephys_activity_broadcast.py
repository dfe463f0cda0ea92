"""Open Ephys Event Broadcaster -> sorted-spike counts per electrode or unit and time bin (see
activity.py)."""

from __future__ import annotations

import logging
import time
from collections import Counter

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.live.ephys_activity import _ActivityIngest

log = logging.getLogger(__name__)


class BroadcastActivityIngest(_ActivityIngest):
    """Sorted spikes from the Event Broadcaster (JSON) -> spike counts per electrode or unit and bin.

    group_by: 'electrode' (one input per electrode name) or 'unit' (one per electrode and
    sorted_id, named "ELECTRODE:SORTED_ID"). units: the names in the model's order (their number
    must equal n_neurons); None: inputs are given out in the order the electrodes / units first
    spike (logged), at most n_neurons, so listing them is safer.
    Bins are closed when an event (spike or TTL) `hold_ms` past their end arrives (the plugin may send
    the spikes of one block out of order across electrodes), or, with `clock_close`, when the local
    clock says so (so that silent stretches still give bins): after the last event the sample clock
    is extrapolated in real time.
    """

    source_name = "Event Broadcaster"

    def __init__(self, host: str, port: int, *, n_neurons: int, bin_ms: float, group_by: str = "electrode",
                 units: list[str] | None = None, stream: str | None = None, stim_address: str | None = None,
                 idle_end_s: float | None = None, hold_ms: float = 30.0, clock_close: bool = True,
                 context: zmq.Context | None = None):
        super().__init__(n_neurons, bin_ms, stim_address, idle_end_s, context)
        if group_by not in ("electrode", "unit"):
            raise ConfigError(f"source.group_by: {group_by!r} is not one of electrode, unit")
        if units is not None:
            if len(units) != self.N:
                raise ConfigError(f"source.units lists {len(units)} units but the model card has {self.N} "
                                  "neurons; they must be equal")
            if len(set(units)) != len(units):
                raise ConfigError("source.units lists a unit twice")
        self.group_by = group_by
        self.fixed_units = units is not None
        self.unit_index: dict[str, int] = {u: i for i, u in enumerate(units or [])}
        self.stream = stream
        self.hold_ms = float(hold_ms)
        self.clock_close = clock_close
        self.client = eb.EventBroadcasterClient(host, port, context=self.ctx)
        self.source_sock = self.client.sock
        self.poller.register(self.source_sock, zmq.POLLIN)
        self.pending: dict[int, np.ndarray] = {}  # open bin -> counts
        self.fs = 0.0
        self.hold = 0
        self.last_sample: int | None = None
        self.last_local = 0.0  # time.monotonic() of the last event
        self.last_wall = 0.0  # time.time() of the last event
        self.spikes = 0
        self.late_spikes = 0
        self.unknown_units: Counter[str] = Counter()
        self.other_stream = 0

    def _max_wait_ms(self) -> int:
        return max(1, int(self.bin_ms / 2)) if self.clock_close else 100

    def _on_source(self) -> None:
        for _ in range(1000):
            ev = self.client.receive(0)
            if ev is None:
                return
            self.last_data = time.monotonic()
            self._on_event(ev, time.perf_counter())
            if self.queue:
                return

    def _unit(self, sp: eb.BroadcastSpike) -> int | None:
        key = sp.electrode if self.group_by == "electrode" else f"{sp.electrode}:{sp.sorted_id}"
        i = self.unit_index.get(key)
        if i is None and not self.fixed_units and len(self.unit_index) < self.N:
            i = self.unit_index[key] = len(self.unit_index)
            log.info("%s: %s %r is input %d (order of first spike; list source.units to fix it)",
                     self.source_name, self.group_by, key, i)
        if i is None:
            self.unknown_units[key] += 1
            self._warn_once("unit:" + key, "%s: spikes of %s %r are not among the model's %d inputs: ignored",
                            self.source_name, self.group_by, key, self.N)
        return i

    def _on_event(self, ev, received: float) -> None:
        if self.stream is None:
            self.stream = ev.stream
        elif ev.stream != self.stream:
            self.other_stream += 1
            return
        s = ev.sample_number
        if self.grid is None or (self.last_sample is not None and s < self.last_sample - 10 * self.hold - 1
                                 and self.grid.index(s) < self.open):
            if ev.sample_rate <= 0:
                self._reject(f"{type(ev).__name__}: sample_rate {ev.sample_rate} is not positive")
                return
            if self.grid is not None:  # far back in time: the acquisition restarted
                self.restarts += 1
                if self.pending:
                    self.dropped_bins += 1
                    self.open = max(self.pending) + 1
                self.pending.clear()
                log.warning("%s: sample numbers went back to %d (acquisition restarted)", self.source_name, s)
            self.fs = ev.sample_rate
            self.hold = round(self.hold_ms * 1e-3 * self.fs)
            self._new_grid(s, self.fs)
            self.last_sample = None
        if self.last_sample is None or s > self.last_sample:
            self.last_sample = s
            self.last_local, self.last_wall = time.monotonic(), time.time()
        if isinstance(ev, eb.BroadcastSpike):
            k = self.grid.index(s)
            if k < self.open:
                self.late_spikes += 1
                self._warn_once("late", "%s: a spike at sample %d came after its bin was closed (%d late so far)",
                                self.source_name, s, self.late_spikes)
            else:
                i = self._unit(ev)
                if i is not None:
                    self.spikes += 1
                    self.pending.setdefault(k, np.zeros(self.N, np.int64))[i] += 1
        self._close_until(self.last_sample - self.hold, received)

    def _close_until(self, horizon: int, received: float) -> None:
        """Hand out every bin that ends at or before sample `horizon`."""
        g = self.grid
        while g.edge(self.open + 1) <= horizon:
            k = self.open
            counts = self.pending.pop(k, None)
            e = g.edge(k + 1)
            t = self.last_wall - (self.last_sample - e) / self.fs
            self._emit(k, np.zeros(self.N) if counts is None else counts, t, received)
            self.open += 1

    def _tick(self, now: float) -> None:
        if self.clock_close and self.grid is not None and self.last_sample is not None and not self.queue:
            est = self.last_sample + int((now - self.last_local) * self.fs)
            self._close_until(est - self.hold, time.perf_counter())

    def _finish(self) -> None:
        if self.grid is None or self.last_sample is None:
            return
        last = self.grid.index(self.last_sample)
        self._close_until(self.grid.edge(last), time.perf_counter())
        if self.open == last:
            counts = self.pending.pop(last, None)
            self._emit(last, np.zeros(self.N) if counts is None else counts,
                       self.last_wall, time.perf_counter(), partial=True, end=self.last_sample + 1)
            self.open += 1

    def _source_rejected(self) -> int:
        return self.client.n_rejected

    def _source_counts(self) -> dict:
        return {"eventbroadcaster": {"received": dict(self.client.received),
                                     "rejected_by_reason": dict(self.client.rejected)},
                "spikes": self.spikes, "late_spikes": self.late_spikes,
                "unknown_units": dict(self.unknown_units), "other_stream": self.other_stream,
                "units": sorted(self.unit_index, key=self.unit_index.get)}

    def _close_source(self) -> None:
        self.client.close()
