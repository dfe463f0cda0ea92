"""Open Ephys ZMQ Interface -> threshold-crossing counts per channel and time bin (see activity.py)."""

from __future__ import annotations

import logging
import time
from collections import Counter

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.extract.ephys import EphysChain, bin_counts
from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.live.ephys_activity import _ActivityIngest

log = logging.getLogger(__name__)


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
