"""Open Ephys -> binned activity vectors, behind the Ingest interface of the live loop.

`LiveSession` pulls `wire.Message`s from an ingest (`receive(timeout_ms)`, `counts()`, `close()`,
`dropped`, `n_rejected`). The adapters here make one `frame` message per completed time bin out of
the Open Ephys GUI's own plugins, so that the live chain can start directly with the ActivityRing:

- `ZmqActivityIngest` (protocol `openephys`): the ZMQ Interface client (with its heartbeat)
  reassembles each processing block into a (channels x samples) chunk; `EphysChain` (band-pass,
  common reference, threshold crossings with a robust noise level, refractory period) turns it into
  events, which are counted per channel and time bin.
- `BroadcastActivityIngest` (protocol `eventbroadcaster`): sorted spikes from the Event Broadcaster
  are counted per electrode or per sorted unit (`group_by`) and time bin.

Each `frame` message: array float32 (N,) = event counts in the bin (not rates: divide by
bin_ms / 1000 for Hz), header `frameNumberAcq` = bin index, consecutive, so a gap in the numbers is
bins lost; `bin_start` / `bin_end` (sample numbers, end exclusive); `partial` True only for the last
bin handed out when the source ended (it holds fewer samples than bin_ms); `t` = the time of the
bin's end on the sender's clock when known (ZMQ Interface: the block's `timestamp`, ms, taken as the
time its last sample was sent, minus the samples after the bin's end), else on the local clock
(`time.time()`; Event Broadcaster, whose JSON carries no clock); `msg.received` = `time.perf_counter()`
when the message that completed the bin arrived (ZMQ Interface: the last channel of the block
holding the bin's last sample; Event Broadcaster: the event, or the local clock, that showed the
bin was over).

Bins: edges in sample numbers, `edge(k) = origin + round(k * bin_ms * fs / 1000)` (a fractional
width does not drift against stimulus frames). `origin` is the first sample received (ZMQ
Interface) or the sample number of the first event received (Event Broadcaster). Bins are NOT
aligned to stimulus times: stimulus messages (`stim_address`, an rtframe publisher such as the
stimulus PC) are passed through unchanged, and the live loop matches each decoded bin to the
stimulus shown at the bin's time `t` (this needs the two clocks to agree, e.g. both NTP-synced).

Losses: a gap in the sample numbers of the stream (a lost message of any channel makes its block
incomplete; an incomplete block is discarded, so it also becomes a gap) drops every bin that holds
a missing sample: those bins are not sent and are counted under `dropped`; the filter state is kept
across the gap. Sample numbers going back (acquisition restarted) start a new bin grid at the new
first sample, the bin numbers continue (the unfinished bin is counted as dropped) and the filter is
restarted with the thresholds already learnt. Malformed messages (any socket) are counted under
`rejected`, never raised. The Event Broadcaster has no message counter, so lost spikes cannot be
detected; spikes arriving after their bin was closed are counted under `late_spikes`.

End: Open Ephys does not say when it stops. With `idle_end_s`, once data has arrived and the source
has then been silent that long, the adapter hands out what is still pending (the unfinished last bin
as `partial`) and then a `stats` message with `end: True`, which ends the live session.
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter, deque

import numpy as np
import zmq

from rtdecode import wire
from rtdecode.errors import ConfigError, WireError
from rtdecode.extract.ephys import EphysChain, bin_counts
from rtdecode.openephys import event_broadcaster as eb
from rtdecode.openephys import zmq_interface as zi

log = logging.getLogger(__name__)


class BinGrid:
    """Bin k covers sample numbers [edge(k), edge(k+1)); edge(k) = origin + round(k * width)."""

    def __init__(self, origin: int, width: float):
        if not width >= 1.0:
            raise ConfigError(f"extraction.ephys.bin_ms: a bin must hold at least one sample (got {width:.3g})")
        self.origin, self.width = int(origin), float(width)

    def edge(self, k: int) -> int:
        return self.origin + math.floor(k * self.width + 0.5)

    def edges(self, k0: int, k1: int) -> np.ndarray:
        """int64 edges of bins k0..k1 (k1 - k0 + 2 values)."""
        k = np.arange(k0, k1 + 2, dtype=np.float64)
        return self.origin + np.floor(k * self.width + 0.5).astype(np.int64)

    def index(self, s: int) -> int:
        """The bin holding sample s (negative before the origin)."""
        k = math.floor((s - self.origin) / self.width)
        while self.edge(k + 1) <= s:
            k += 1
        while self.edge(k) > s:
            k -= 1
        return k


class _ActivityIngest:
    """What both adapters share: the queue of ready messages, the stimulus pass-through, counts."""

    source_name = "source"

    def __init__(self, n_neurons: int, bin_ms: float, stim_address: str | None = None,
                 idle_end_s: float | None = None, context: zmq.Context | None = None):
        if n_neurons < 1:
            raise ConfigError(f"the model card must have >= 1 neurons, got {n_neurons}")
        self.ctx = context or zmq.Context.instance()
        self.N = int(n_neurons)
        self.bin_ms = float(bin_ms)
        self.idle_end_s = idle_end_s
        self.queue: deque[wire.Message] = deque()
        self.poller = zmq.Poller()
        self.stim_sock = None
        self.stim_gaps = wire.GapCounter()
        if stim_address is not None:
            self.stim_sock = self.ctx.socket(zmq.SUB)
            self.stim_sock.setsockopt(zmq.LINGER, 0)
            self.stim_sock.setsockopt(zmq.SUBSCRIBE, b"stim")
            self.stim_sock.connect(stim_address)
            self.poller.register(self.stim_sock, zmq.POLLIN)
        self.sent: Counter[str] = Counter()  # messages handed to the live loop, by topic
        self.rejected_here: Counter[str] = Counter()
        self.dropped_bins = 0
        self.restarts = 0
        self.seq = 0
        self.grid: BinGrid | None = None
        self.base = 0  # frame number of bin 0 of the current grid
        self.open = 0  # the first bin of the grid not handed out yet
        self.last_data: float | None = None  # monotonic time of the last source message
        self.ended = False
        self._last_log: dict[str, float] = {}

    # ---------------------------------------------------------------- Ingest interface
    def receive(self, timeout_ms: int = 100) -> wire.Message | None:
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            if self.queue:
                return self.queue.popleft()
            if self.ended:
                return None
            now = time.monotonic()
            self._tick(now)
            if self.idle_end_s is not None and self.last_data is not None and now - self.last_data > self.idle_end_s:
                log.info("%s silent for %.1f s: ending", self.source_name, self.idle_end_s)
                self._finish()
                self._emit_end()
                continue
            if self.queue:
                continue
            left = deadline - now
            if left <= 0:
                return None
            wait = max(0, min(int(left * 1000), self._max_wait_ms()))
            ready = dict(self.poller.poll(wait))
            if self.stim_sock is not None and self.stim_sock in ready:
                self._on_stim()
            if self.source_sock in ready:
                self._on_source()

    @property
    def dropped(self) -> int:
        return self.dropped_bins

    @property
    def n_rejected(self) -> int:
        return sum(self.rejected_here.values()) + self._source_rejected()

    def counts(self) -> dict:
        return {"received": dict(self.sent), "rejected": self.n_rejected,
                "rejected_by_reason": dict(self.rejected_here), "dropped": self.dropped_bins,
                "restarts": self.restarts, "stim_dropped": self.stim_gaps.missing, **self._source_counts()}

    def close(self) -> None:
        if self.stim_sock is not None:
            self.stim_sock.close(linger=0)
        self._close_source()

    # ---------------------------------------------------------------- for the subclasses
    source_sock: zmq.Socket

    def _max_wait_ms(self) -> int:
        return 100

    def _tick(self, now: float) -> None:
        pass

    def _finish(self) -> None:
        pass

    def _source_rejected(self) -> int:
        return 0

    def _source_counts(self) -> dict:
        return {}

    def _close_source(self) -> None:
        pass

    def _on_source(self) -> None:
        raise NotImplementedError

    def _reject(self, reason: str) -> None:
        key = reason[:60]
        self.rejected_here[key] += 1
        self._warn_once(key, "%s: rejected (%d so far of this kind): %s", self.source_name,
                        self.rejected_here[key], reason)

    def _warn_once(self, key: str, fmt: str, *args) -> None:
        now = time.monotonic()
        if now - self._last_log.get(key, -10.0) > 1.0:
            self._last_log[key] = now
            log.warning(fmt, *args)

    def _on_stim(self) -> None:
        for _ in range(100):
            if not self.stim_sock.poll(0):
                return
            frames = self.stim_sock.recv_multipart()
            received = time.perf_counter()
            try:
                msg = wire.decode(frames)
                if msg.topic != "stim":
                    raise WireError(f"stim_address: expected topic 'stim', got '{msg.topic}'")
            except WireError as exc:
                self._reject(f"stim: {exc}")
                continue
            msg.received = received
            self.stim_gaps.see(msg.seq)
            self.sent["stim"] += 1
            self.queue.append(msg)

    def _emit(self, k: int, counts: np.ndarray, t: float, received: float, partial: bool = False,
              end: int | None = None) -> None:
        g = self.grid
        header = {"v": wire.VERSION, "seq": self.seq, "t": float(t), "dtype": "<f4", "shape": [self.N],
                  "frameNumberAcq": self.base + k, "channel": 0, "plane": 0,
                  "bin_start": g.edge(k), "bin_end": g.edge(k + 1) if end is None else int(end), "partial": partial}
        self.seq += 1
        self.sent["frame"] += 1
        self.queue.append(wire.Message("frame", header, np.asarray(counts, np.float32).copy(), received))

    def _emit_end(self) -> None:
        header = {"v": wire.VERSION, "seq": self.seq, "t": time.time(), "dtype": "|u1", "shape": [0], "end": True}
        self.seq += 1
        self.sent["stats"] += 1
        self.queue.append(wire.Message("stats", header, np.zeros(0, np.uint8), time.perf_counter()))
        self.ended = True

    def _new_grid(self, origin: int, fs: float) -> None:
        """A bin grid starting at `origin`; numbers continue after the previous grid's."""
        if self.grid is not None:
            self.base += self.open
        self.grid = BinGrid(origin, self.bin_ms * 1e-3 * fs)
        self.open = 0


# ---------------------------------------------------------------------------- ZMQ Interface

class ZmqActivityIngest(_ActivityIngest):
    """Continuous data from the ZMQ Interface plugin -> threshold-crossing counts per channel and bin.

    n_neurons: the model's input size; the stream's channels (or `channels`) must match it (a
    ConfigError naming both numbers at the first block otherwise). stream: the stream name (None:
    the first one seen). channels: channel numbers (`channel_num`, 0-based) to use, in this order.
    band_hz, threshold (x robust noise), threshold_uv, reference, refractory_ms: EphysChain.
    """

    source_name = "ZMQ Interface"

    def __init__(self, host: str, data_port: int, *, n_neurons: int, bin_ms: float,
                 band_hz=(300.0, 6000.0), threshold: float = 4.5, threshold_uv: float | None = None,
                 reference: str | None = "mean", refractory_ms: float = 1.0, noise_s: float = 1.0,
                 heartbeat_port: int | None = None, heartbeat_interval_s: float = 2.0,
                 stream: str | None = None, channels: list[int] | None = None,
                 stim_address: str | None = None, idle_end_s: float | None = None,
                 max_chunk: int = 4096, context: zmq.Context | None = None):
        super().__init__(n_neurons, bin_ms, stim_address, idle_end_s, context)
        if channels is not None and len(channels) != self.N:
            raise ConfigError(f"source.channels lists {len(channels)} channels but the model card has "
                              f"{self.N} neurons; they must be equal")
        self.chain_kw = {"band": None if band_hz is None else tuple(band_hz), "reference": reference, "k": threshold,
                         "threshold_uv": threshold_uv, "refractory_ms": refractory_ms, "noise_s": noise_s}
        # Fail now, not at the first block, on settings the chain refuses (the sample rate is not
        # known yet: check the band against the highest rate Open Ephys acquires at).
        EphysChain(1, 1e6, max_chunk=1, **self.chain_kw)
        from rtdecode.extract import kernels

        kernels.warm_up_kernels()  # compile / load the numba kernels before the first block
        self.stream = stream
        self.channels = None if channels is None else [int(c) for c in channels]
        self.max_chunk = int(max_chunk)
        self.client = zi.ZmqInterfaceClient(host, data_port, heartbeat_port=heartbeat_port,
                                            heartbeat_interval_s=heartbeat_interval_s, context=self.ctx)
        self.source_sock = self.client.sock
        self.poller.register(self.source_sock, zmq.POLLIN)
        self.chain: EphysChain | None = None
        self.rows: np.ndarray | None = None  # rows of a chunk to use, in the model's order
        self.layout: list[int] | None = None  # channel_nums of the chunks of the first block
        self.fs = 0.0
        self.next_sample: int | None = None
        self.open_counts: np.ndarray | None = None
        self.open_has = False  # the open bin holds samples already
        self.last_t_end = 0.0
        self.chunks = 0
        self.skipped = Counter()  # chunks not used, by reason
        self.events = 0

    def _tick(self, now: float) -> None:
        self.client.service_heartbeat(now)

    def _on_source(self) -> None:
        # One message at a time, so a completed bin goes to the live loop at once.
        out: list = []
        for _ in range(1000):
            if not self.source_sock.poll(0):
                return
            frames = self.source_sock.recv_multipart(copy=True)
            received = time.perf_counter()
            self.last_data = time.monotonic()
            self.client.handle(frames, out)
            for item in out:
                if isinstance(item, zi.ContinuousChunk):
                    self._on_chunk(item, received)
            out.clear()
            if self.queue:
                return

    # ---------------------------------------------------------------- chunks -> bins
    def _setup(self, ch: zi.ContinuousChunk) -> None:
        nums = list(ch.channel_nums)
        if self.channels is not None:
            missing = [c for c in self.channels if c not in nums]
            if missing:
                raise ConfigError(f"source.channels: channel(s) {missing} are not in stream {ch.stream!r}, "
                                  f"which sends channels {nums[0]}..{nums[-1]} ({len(nums)})")
            self.rows = np.array([nums.index(c) for c in self.channels], np.int64)
            n = len(self.rows)
        else:
            n = len(nums)
            if n != self.N:
                raise ConfigError(f"stream {ch.stream!r} sends {n} channels but the model card has {self.N} "
                                  "neurons; they must be equal (or list the model's channels in source.channels)")
        self.layout = nums
        self.fs = ch.sample_rate
        self.chain = EphysChain(n, ch.sample_rate, t0=ch.sample_num, max_chunk=self.max_chunk, **self.chain_kw)
        self._new_grid(ch.sample_num, ch.sample_rate)
        self.open_counts = np.zeros(n, np.int64)
        log.info("%s: stream %r, %d of %d channels at %g Hz; bins of %.4g samples from sample %d",
                 self.source_name, ch.stream, n, len(nums), ch.sample_rate, self.grid.width, ch.sample_num)

    def _on_chunk(self, ch: zi.ContinuousChunk, received: float) -> None:
        if self.stream is None:
            self.stream = ch.stream
        elif ch.stream != self.stream:
            self.skipped["other stream"] += 1
            return
        if self.chain is None:
            self._setup(ch)
        if not ch.complete or ch.channel_nums != self.layout:
            # A lost channel message: the block is incomplete; its samples become a gap.
            self.skipped["incomplete block"] += 1
            self._warn_once("incomplete", "%s: block at sample %d has channels %d of %d: discarded (a gap)",
                            self.source_name, ch.sample_num, len(ch.channel_nums), len(self.layout))
            return
        if ch.sample_rate != self.fs:
            self._reject(f"data: sample rate changed from {self.fs} to {ch.sample_rate}")
            return
        a, n = ch.sample_num, ch.num_samples
        b = a + n
        if n == 0:
            return
        if self.next_sample is not None and a != self.next_sample:
            if a > self.next_sample:
                self._gap(self.next_sample, a)
            else:
                self._restart(a)
        self.next_sample = b
        self.chunks += 1
        data = ch.data if self.rows is None else ch.data[self.rows]
        x = np.ascontiguousarray(data.T)  # (samples, channels), as EphysChain takes them
        g = self.grid
        k_lo, k_hi = self.open, g.index(b - 1)
        counts = None
        if k_hi >= k_lo:
            counts = np.zeros((k_hi - k_lo + 1, x.shape[1]), np.int64)
            counts[0] += self.open_counts
            edges = g.edges(k_lo, k_hi)
        for i in range(0, n, self.max_chunk):
            ev_t, ev_c = self.chain.process(x[i:i + self.max_chunk])
            self.events += ev_t.shape[0]
            if counts is not None and ev_t.shape[0]:
                bin_counts(ev_t, ev_c, edges, counts)
        if counts is None:  # the whole block lies in a bin already dropped
            return
        t_end = ch.timestamp_ms / 1000.0 if ch.timestamp_ms > 0 else time.time()
        self.last_t_end = t_end
        for j, k in enumerate(range(k_lo, k_hi + 1)):
            e = int(edges[j + 1])
            if e > b:  # bin k_hi goes on in the next block
                self.open, self.open_counts, self.open_has = k, counts[j], True
                return
            self._emit(k, counts[j], t_end - (b - e) / self.fs, received)
        self.open, self.open_has = k_hi + 1, False
        self.open_counts = np.zeros_like(self.open_counts)

    def _gap(self, first_missing: int, resume: int) -> None:
        g = self.grid
        k_first, k_last = self.open, g.index(resume - 1)
        lost = max(0, k_last - k_first + 1)
        self.dropped_bins += lost
        self.open = max(self.open, k_last + 1)
        self.open_has = False
        self.open_counts = np.zeros_like(self.open_counts)
        self.chain.skip(resume - first_missing)
        log.warning("%s: samples %d..%d missing: %d bin(s) dropped (%d so far)", self.source_name,
                    first_missing, resume - 1, lost, self.dropped_bins)

    def _restart(self, a: int) -> None:
        self.restarts += 1
        if self.open_has:
            self.dropped_bins += 1
            self.open += 1
        self._new_grid(a, self.fs)
        self.open_has = False
        self.open_counts = np.zeros_like(self.open_counts)
        self.chain.restart(a)
        log.warning("%s: sample numbers went back to %d (acquisition restarted): new bins from there, "
                    "frame numbers continue at %d", self.source_name, a, self.base)

    def _finish(self) -> None:
        now = time.perf_counter()
        for item in self.client.flush():
            if isinstance(item, zi.ContinuousChunk):
                self._on_chunk(item, now)
        if self.grid is not None and self.open_has:
            self._emit(self.open, self.open_counts, self.last_t_end, time.perf_counter(), partial=True,
                       end=self.next_sample)
            self.open_has = False
            self.open += 1

    def _source_rejected(self) -> int:
        return self.client.n_rejected

    def _source_counts(self) -> dict:
        return {"openephys": self.client.counts(), "chunks": self.chunks, "crossings": self.events,
                "skipped_chunks": dict(self.skipped), "calibrated": bool(self.chain is not None and self.chain.calibrated)}

    def _close_source(self) -> None:
        self.client.close()


# ---------------------------------------------------------------------------- Event Broadcaster

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


def make_activity_ingest(cfg, n_neurons: int, context: zmq.Context | None = None) -> _ActivityIngest:
    """The adapter for a RigConfig whose source is `openephys` or `eventbroadcaster`."""
    from rtdecode.config import split_endpoint

    src, ep = cfg.source, cfg.extraction.ephys
    host, port = split_endpoint(src.address[0])
    if src.protocol == "openephys":
        if src.event_broadcaster:
            log.info("source.event_broadcaster is not used by the live loop (continuous data drives it)")
        hb = src.heartbeat
        return ZmqActivityIngest(host, port, n_neurons=n_neurons, bin_ms=ep.bin_ms, band_hz=ep.band_hz,
                                 threshold=ep.threshold, threshold_uv=ep.threshold_uv, reference=ep.reference,
                                 heartbeat_port=src.heartbeat_port,
                                 heartbeat_interval_s=hb.interval_s if hb is not None else 2.0,
                                 stream=src.stream, channels=src.channels, stim_address=src.stim_address,
                                 idle_end_s=src.idle_end_s, context=context)
    if src.protocol == "eventbroadcaster":
        return BroadcastActivityIngest(host, port, n_neurons=n_neurons, bin_ms=ep.bin_ms,
                                       group_by=src.group_by or "electrode", units=src.units, stream=src.stream,
                                       stim_address=src.stim_address, idle_end_s=src.idle_end_s, context=context)
    raise ConfigError(f"source.protocol {src.protocol}: not an Open Ephys protocol")
