"""Open Ephys ZMQ Interface -> blocks of continuous samples, each inside one time bin.

The protocol side of the continuous ephys path; the extraction (band-pass, common reference,
threshold crossings, binning) runs on the blocks as stages (rtdecode.extract.ephys_stages), driven
by rtdecode.live.ephys.

`ContinuousSource.read()` receives the plugin's per-channel messages (`zmq_interface` reassembles
them into processing blocks), keeps one stream and the chosen channels, follows the sample numbers
and hands out `Block`s of (samples, channels) float32 µV:

- Cutting: every received processing block is cut at the bin edges and at most every
  `block_samples` samples (the extraction's fixed block capacity). No sample waits for the next
  message (nothing is carried over): a bin goes out as soon as its last sample has arrived, and a
  block shorter than `block_samples` (a cut at a bin edge, the tail of a message) runs on the
  leading rows of the extraction's preallocated buffers. A block never spans two bins, so the
  events found in it all belong to its `bin`.
- Bins: `BinGrid` from the first sample received; `bin` is the frame number (bin index,
  consecutive; a new grid after a restart continues the numbers). `closes` marks the block that
  ends with its bin's last sample: the bin is complete.
- Gaps: a sample-number gap (a lost message makes its block incomplete; an incomplete block is
  discarded, so it becomes a gap too) drops every bin that holds a missing sample: no block of
  those bins `closes`, they are counted under `dropped_bins`; the first block after the gap says
  how many samples are missing (`skip`), so the extraction moves its sample clock on and keeps its
  filter state.
- Restarts: sample numbers going back start a new grid at the new first sample; the unfinished bin
  is dropped; the first block after it has `restart` set (the extraction restarts its filter and
  keeps the thresholds it learnt).
- End: `finish()` hands out the unfinished last bin as an empty block with `closes` and `partial`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np
import zmq

from rtdecode.errors import ConfigError
from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.bins import BinGrid
from rtdecode.sources.rejects import WarnEvery

log = logging.getLogger(__name__)


@dataclass
class Block:
    """Samples of one bin: data float32 (n, C), samples x channels (a view, valid until the next read)."""

    data: np.ndarray
    sample: int  # sample number of data[0]
    sample_rate: float
    bin: int  # frame number of the bin the samples belong to
    closes: bool = False  # the block ends the bin: it is complete
    skip: int = 0  # samples missing just before this block (a gap)
    restart: bool = False  # the first block after the acquisition restarted
    t: float = 0.0  # closes: time of the bin's end on the sender's clock (s)
    received: float = 0.0  # time.perf_counter() when the message that completed the block arrived
    bin_start: int = 0
    bin_end: int = 0  # end exclusive
    partial: bool = False  # the last bin when the source ended: fewer samples than a bin


class ContinuousSource:
    """The ZMQ Interface's continuous data, cut into `Block`s on a bin grid (see the module doc).

    n_channels: the number of channels the extraction takes (the model's inputs); the stream's
    channels (or `channels`) must match it (a ConfigError naming both numbers at the first block
    otherwise). stream: the stream name (None: the first one seen). channels: channel numbers
    (`channel_num`, 0-based) to use, in this order. bin_ms: bin width. block_samples: the largest
    block handed out. on_reject(reason): called for each malformed or inconsistent message.
    """

    name = "ZMQ Interface"

    def __init__(self, host: str, data_port: int, *, n_channels: int, bin_ms: float, block_samples: int = 1024,
                 heartbeat_port: int | None = None, heartbeat_interval_s: float = 2.0,
                 stream: str | None = None, channels: list[int] | None = None,
                 on_reject: Callable[[str], None] | None = None, context: zmq.Context | None = None):
        if channels is not None and len(channels) != n_channels:
            raise ConfigError(f"source.channels lists {len(channels)} channels but the model card has "
                              f"{n_channels} neurons; they must be equal")
        if block_samples < 1:
            raise ConfigError(f"extraction.ephys.block_samples must be >= 1, got {block_samples}")
        self.N = int(n_channels)
        self.bin_ms = float(bin_ms)
        self.block = int(block_samples)
        self.stream = stream
        self.channels = None if channels is None else [int(c) for c in channels]
        self.on_reject = on_reject or (lambda detail, reason="field": log.warning("%s: rejected (%s): %s", self.name, reason, detail))
        self.client = zi.ZmqInterfaceClient(host, data_port, heartbeat_port=heartbeat_port,
                                            heartbeat_interval_s=heartbeat_interval_s, context=context)
        self.sock = self.client.sock
        self.max_wait_ms = 100  # how long the adapter may wait on the socket between ticks
        self.rows: np.ndarray | None = None  # rows of a chunk to use, in the model's order
        self.layout: list[int] | None = None  # channel_nums of the chunks of the first block
        self.fs = 0.0
        self.grid: BinGrid | None = None
        self.base = 0  # frame number of bin 0 of the current grid
        self.open = 0  # the first bin of the grid not handed out (or dropped) yet
        self.open_has = False  # the open bin holds samples already
        self.next_sample: int | None = None
        self.pending_skip = 0
        self.pending_restart = False
        self.last_t_end = 0.0
        self.last_data: float | None = None  # time.monotonic() of the last message
        self.dropped_bins = 0
        self.restarts = 0
        self.chunks = 0
        self.layout_changes = 0  # the stream's channels changed and the model's were found again
        self.skipped: Counter[str] = Counter()  # chunks not used, by reason
        self._warn_once = WarnEvery(log)  # at most once a second per kind

    # ---------------------------------------------------------------- what the live adapter calls
    def read(self, out: list) -> None:
        """Receive what is waiting (without blocking); append the `Block`s it completes to `out`.
        Returns after the first message that completed any, so a bin goes on at once."""
        items: list = []
        for _ in range(1000):
            if not self.sock.poll(0):
                return
            frames = self.sock.recv_multipart(copy=True)
            received = time.perf_counter()
            self.last_data = time.monotonic()
            self.client.handle(frames, items)
            n = len(out)
            for item in items:
                if isinstance(item, ziw.ContinuousChunk):
                    self._on_chunk(item, received, out)
            items.clear()
            if len(out) > n:
                return

    def tick(self, now: float, out: list) -> None:
        """Keep the plugin's heartbeat going (nothing is handed out here)."""
        self.client.service_heartbeat(now)

    def finish(self, out: list) -> None:
        """The source ended: hand out what is still waiting, then the unfinished bin (`partial`)."""
        now = time.perf_counter()
        for item in self.client.flush():
            if isinstance(item, ziw.ContinuousChunk):
                self._on_chunk(item, now, out)
        if self.grid is not None and self.open_has:
            k = self.open
            out.append(Block(np.zeros((0, self.N), np.float32), self.next_sample, self.fs, self.base + k,
                             closes=True, t=self.last_t_end, received=time.perf_counter(),
                             bin_start=self.grid.edge(k), bin_end=self.next_sample, partial=True))
            self.open_has = False
            self.open += 1

    @property
    def n_rejected(self) -> int:
        return self.client.n_rejected

    def counts(self) -> dict:
        return {"openephys": self.client.counts(), "chunks": self.chunks, "skipped_chunks": dict(self.skipped),
                "layout_changes": self.layout_changes}

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------------- chunks -> blocks
    def _setup(self, ch: ziw.ContinuousChunk) -> None:
        nums = list(ch.channel_nums)
        if self.channels is not None:
            missing = [c for c in self.channels if c not in nums]
            if missing:
                raise ConfigError(f"source.channels: channel(s) {missing} are not in stream {ch.stream!r}, "
                                  f"which sends channels {nums[0]}..{nums[-1]} ({len(nums)})")
            self.rows = np.array([nums.index(c) for c in self.channels], np.int64)
        elif len(nums) != self.N:
            raise ConfigError(f"stream {ch.stream!r} sends {len(nums)} channels but the model card has {self.N} "
                              "neurons; they must be equal (or list the model's channels in source.channels)")
        self.layout = nums
        self.fs = ch.sample_rate
        self._new_grid(ch.sample_num)
        log.info("%s: stream %r, %d of %d channels at %g Hz; bins of %.4g samples from sample %d, blocks of "
                 "at most %d samples", self.name, ch.stream, self.N, len(nums), ch.sample_rate, self.grid.width,
                 ch.sample_num, self.block)

    def _relayout(self, ch: ziw.ContinuousChunk) -> bool:
        """The stream's channels changed mid-session: take the model's channels from the new layout
        if it still has them (`channels` listed, or exactly the model's number of channels), counted
        under `layout_changes`; otherwise the block is skipped ('unusable layout', its samples a gap,
        the bins counted as dropped once a usable block comes)."""
        nums = list(ch.channel_nums)
        if self.channels is not None and all(c in nums for c in self.channels):
            rows = np.array([nums.index(c) for c in self.channels], np.int64)
        elif self.channels is None and len(nums) == self.N:
            rows = None
        else:
            self.skipped["unusable layout"] += 1
            self._warn_once("layout", "%s: stream %r now sends %d channels (%s), which do not hold the model's %d "
                            "(%s): blocks skipped until they do", self.name, ch.stream, len(nums),
                            f"{nums[0]}..{nums[-1]}" if nums else "none", self.N,
                            "source.channels" if self.channels is not None else "same number")
            return False
        self.layout_changes += 1
        self._warn_once("relayout", "%s: stream %r changed from %d to %d channels; the model's %d taken from the "
                        "new layout (%d change(s) so far)", self.name, ch.stream, len(self.layout), len(nums), self.N,
                        self.layout_changes)
        self.layout, self.rows = nums, rows
        return True

    def _new_grid(self, origin: int) -> None:
        """A bin grid starting at `origin`; frame numbers continue after the previous grid's."""
        if self.grid is not None:
            self.base += self.open
        self.grid = BinGrid(origin, self.bin_ms * 1e-3 * self.fs)
        self.open = 0

    def _on_chunk(self, ch: ziw.ContinuousChunk, received: float, out: list) -> None:
        if self.stream is not None and ch.stream != self.stream:
            self.skipped["other stream"] += 1
            self._warn_once("other stream", "%s: data of stream %r skipped: the session follows stream %r",
                            self.name, ch.stream, self.stream)
            return
        if self.layout is None:
            # The first stream that fits the model is taken; one that does not (a stray stream, or a
            # model fitted on other channels) is rejected with the reason, never taken, never fatal.
            try:
                self._setup(ch)
            except ConfigError as exc:
                self.skipped["unusable stream"] += 1
                self.on_reject(f"{exc}", "source")
                return
            self.stream = ch.stream
        if not ch.complete:
            # A lost channel message: the block is incomplete; its samples become a gap.
            self.skipped["incomplete block"] += 1
            self._warn_once("incomplete", "%s: block at sample %d has channels %d of %d: discarded (a gap)",
                            self.name, ch.sample_num, len(ch.channel_nums), len(self.layout))
            return
        if ch.channel_nums != self.layout and not self._relayout(ch):
            return
        if ch.sample_rate != self.fs:
            self.on_reject(f"data: sample rate changed from {self.fs} to {ch.sample_rate}")
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
        x = np.ascontiguousarray(data.T)  # (samples, channels), as the extraction takes them
        t_end = ch.timestamp_ms / 1000.0 if ch.timestamp_ms > 0 else time.time()
        self.last_t_end = t_end
        g = self.grid
        pos = a
        while pos < b:
            k = g.index(pos)
            e = g.edge(k + 1)
            end = min(b, e, pos + self.block)
            live = k >= self.open  # False: the bin holds a missing sample (dropped)
            closes = live and end == e
            out.append(Block(x[pos - a:end - a], pos, self.fs, self.base + k, closes=closes,
                             skip=self.pending_skip, restart=self.pending_restart,
                             t=t_end - (b - e) / self.fs if closes else 0.0, received=received,
                             bin_start=g.edge(k), bin_end=e))
            self.pending_skip, self.pending_restart = 0, False
            if closes:
                self.open, self.open_has = k + 1, False
            elif live:
                self.open_has = True
            pos = end

    def _gap(self, first_missing: int, resume: int) -> None:
        k_first, k_last = self.open, self.grid.index(resume - 1)
        lost = max(0, k_last - k_first + 1)
        self.dropped_bins += lost
        self.open = max(self.open, k_last + 1)
        self.open_has = False
        self.pending_skip += resume - first_missing
        log.warning("%s: samples %d..%d missing: %d bin(s) dropped (%d so far)", self.name,
                    first_missing, resume - 1, lost, self.dropped_bins)

    def _restart(self, a: int) -> None:
        self.restarts += 1
        if self.open_has:
            self.dropped_bins += 1
            self.open += 1
        self._new_grid(a)
        self.open_has = False
        self.pending_skip, self.pending_restart = 0, True
        log.warning("%s: sample numbers went back to %d (acquisition restarted): new bins from there, "
                    "frame numbers continue at %d", self.name, a, self.base)
