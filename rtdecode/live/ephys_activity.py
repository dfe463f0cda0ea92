"""Open Ephys -> binned activity vectors, behind the Ingest interface of the live loop.

`LiveSession` pulls `wire.Message`s from an ingest (`receive(timeout_ms)`, `counts()`, `close()`,
`dropped`, `n_rejected`). The adapters here make one `frame` message per completed time bin out of
the Open Ephys GUI's own plugins, so that the live chain can start directly with the ActivityRing:

- `ZmqActivityIngest` (protocol `openephys`, activity_zmq.py): the ZMQ Interface client (with its heartbeat)
  reassembles each processing block into a (channels x samples) chunk; `EphysChain` (band-pass,
  common reference, threshold crossings with a robust noise level, refractory period) turns it into
  events, which are counted per channel and time bin.
- `BroadcastActivityIngest` (protocol `eventbroadcaster`, activity_broadcast.py): sorted spikes from the Event Broadcaster
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

from rtdecode.sources import wire
from rtdecode.errors import ConfigError, WireError

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


def make_activity_ingest(cfg, n_neurons: int, context: zmq.Context | None = None) -> _ActivityIngest:
    """The adapter for a RigConfig whose source is `openephys` or `eventbroadcaster`."""
    from rtdecode.live.config import split_endpoint
    from rtdecode.live.ephys_activity_broadcast import BroadcastActivityIngest
    from rtdecode.live.ephys_activity_zmq import ZmqActivityIngest

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
