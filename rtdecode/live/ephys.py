"""Open Ephys -> binned activity vectors for the live loop: source, extraction stages, one frame per bin.

`LiveSession` pulls `wire.Message`s from an ingest (rtdecode.sources.interface.SourceIngest).
`EphysIngest` makes one `frame` message per completed time bin out of the
Open Ephys GUI's own plugins, so that the live chain starts directly with the ActivityRing:

- protocol `openephys`: `ContinuousSource` (rtdecode.sources.openephys.continuous: the ZMQ
  Interface client with its heartbeat, reassembly, sample-number gaps and restarts, the bin grid)
  hands out blocks of samples cut at bin edges; the extraction `SampleChain` of stages
  (rtdecode.extract.ephys_stages: bandpass, common_reference, detect, bin) turns them into
  threshold-crossing counts per channel.
- protocol `eventbroadcaster`: `SortedSpikeSource` (rtdecode.sources.openephys.sorted_spikes) hands
  out the sorted spikes of each completed bin; the stage `bin_units` counts them per electrode or
  sorted unit (`group_by`).

The extraction chain is built by `ephys_stages` before the first block (its specs depend on the
model's inputs and `extraction.ephys.block_samples`, not on the sample rate), so `rtdecode run`
checks the whole graph, extraction -> activity ring -> decoder, and warms every stage before it
connects; `LiveSession(extraction=...)` times each stage and reports it under `stages_ms`.

Each `frame` message: array float32 (N,) = event counts in the bin (not rates: divide by
bin_ms / 1000 for Hz), header `frameNumberAcq` = bin index, consecutive, so a gap in the numbers is
bins lost; `bin_start` / `bin_end` (sample numbers, end exclusive); `partial` True only for the last
bin handed out when the source ended (it holds fewer samples than bin_ms); `t` = the time of the
bin's end on the sender's clock when known (ZMQ Interface: the block's `timestamp`, ms, taken as the
time its last sample was sent, minus the samples after the bin's end), else on the local clock
(`time.time()`; Event Broadcaster, whose JSON carries no clock: the bin end's sample number mapped
by a minimum-delay estimate of the sample clock over the spikes' arrivals); `msg.received` = `time.perf_counter()`
when the message that completed the bin arrived (ZMQ Interface: the last channel of the block
holding the bin's last sample; Event Broadcaster: the event, or the local clock, that showed the
bin was over).

Bins are NOT aligned to stimulus times: stimulus messages (`stim_address`, an rtframe publisher such
as the stimulus PC) are passed through unchanged, and the live loop matches each decoded bin to the
stimulus shown at the bin's time `t` (this needs the two clocks to agree, e.g. both NTP-synced).
Losses, restarts: see the two source modules; bins lost are counted under `dropped`. Malformed
messages (any socket) are counted under `rejected`, never raised.

End: Open Ephys does not say when it stops. With `idle_end_s`, once data has arrived and the source
has then been silent that long, the adapter hands out what is still pending (the unfinished last bin
as `partial`) and then a `stats` message with `end: True`, which ends the live session.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque

import numpy as np
import zmq

from rtdecode.errors import ConfigError, WireError
from rtdecode.extract.ephys_stages import BinCounts, Detect, SampleChain, build_ephys_stages, pack_events
from rtdecode.live.config import RigConfig, split_endpoint
from rtdecode.sources import protocols, wire
from rtdecode.sources.openephys.continuous import Block, ContinuousSource
from rtdecode.sources.openephys.sorted_spikes import SortedSpikeSource, SpikeBin
from rtdecode.sources.rejects import Rejects
from rtdecode.stage import Chain, Stage

log = logging.getLogger(__name__)

STIM_MAX_BYTES = 16 * 2**20  # the largest stimulus message taken (a stimulus image rides along)

SPIKES_PER_EVENT_BLOCK = 4096  # sorted path: a bin with more spikes goes through `bin_units` in several blocks


def ephys_stages(cfg: RigConfig, n_inputs: int) -> list[Stage]:
    """The extraction stages of an Open Ephys rig for a model of `n_inputs` neurons: those of its
    protocol (rtdecode.sources.protocols, `stages`)."""
    if cfg.extraction.ephys is None:
        raise ConfigError(f"source.protocol {cfg.source.protocol} needs extraction.ephys")
    proto = protocols.get(cfg.source.protocol)
    if proto.stages is None:
        raise ConfigError(f"source.protocol {proto.name}: a {proto.modality} protocol has no ephys stages")
    return proto.make_stages(cfg, n_inputs)


def openephys_stages(cfg: RigConfig, n_inputs: int) -> list[Stage]:
    """Protocol `openephys`: extraction.ephys.stages on blocks of samples (default: bandpass,
    common_reference (unless reference is null), detect, bin), blocks of at most
    extraction.ephys.block_samples x n_inputs channels."""
    ep = cfg.extraction.ephys
    return build_ephys_stages(n_inputs, ep.block_samples, spec=ep.chain_spec())


def eventbroadcaster_stages(cfg: RigConfig, n_inputs: int) -> list[Stage]:
    """Protocol `eventbroadcaster`: extraction.ephys.stages on event blocks of sorted spikes (default:
    [bin_units], the spikes counted per input and bin)."""
    ep = cfg.extraction.ephys
    return build_ephys_stages(n_inputs, ep.block_samples, spec=ep.chain_spec(["bin_units"]), takes="events",
                              capacity=SPIKES_PER_EVENT_BLOCK)


class EphysIngest:
    """An Open Ephys source and its extraction chain behind the ingest interface
    (rtdecode.sources.interface.SourceIngest; see the module doc).

    source: ContinuousSource (extraction: a SampleChain ending in BinCounts) or SortedSpikeSource
    (extraction: a Chain of one BinCounts)."""

    def __init__(self, source: ContinuousSource | SortedSpikeSource, extraction: Chain,
                 stim_address: str | None = None, idle_end_s: float | None = None,
                 context: zmq.Context | None = None):
        bins = extraction.stages[-1]
        if not isinstance(bins, BinCounts):
            raise ConfigError(f"the ephys extraction must end with a bin stage, not '{bins.name}'")
        self.source, self.chain, self.bins = source, extraction, bins
        self.detect = next((s for s in extraction.stages if isinstance(s, Detect)), None)
        self.N = bins.out_spec.shape[0]
        self.ctx = context or zmq.Context.instance()
        self.idle_end_s = idle_end_s
        self.queue: deque[wire.Message] = deque()
        self.items: list = []  # Blocks / SpikeBins from the source, not yet run
        self.poller = zmq.Poller()
        self.poller.register(source.sock, zmq.POLLIN)
        self.stim_sock = None
        self.stim_gaps = wire.GapCounter()
        if stim_address is not None:
            self.stim_sock = self.ctx.socket(zmq.SUB)
            self.stim_sock.setsockopt(zmq.LINGER, 0)
            self.stim_sock.setsockopt(zmq.RCVHWM, 64)
            self.stim_sock.setsockopt(zmq.MAXMSGSIZE, STIM_MAX_BYTES)  # a stimulus image, not a flood
            self.stim_sock.setsockopt(zmq.SUBSCRIBE, b"stim")
            self.stim_sock.connect(stim_address)
            self.poller.register(self.stim_sock, zmq.POLLIN)
        self.sent: Counter[str] = Counter()  # messages handed to the live loop, by topic
        self.rejects = Rejects(f"{source.name} (live adapter)", logger=log)
        self.seq = 0
        self.started = False  # the first block has set the sample rate
        self.bin: int | None = None  # the bin the extraction's counts belong to
        self._events = None if isinstance(extraction, SampleChain) else extraction.in_spec.empty()
        self.ended = False

    # ---------------------------------------------------------------- Ingest interface
    def receive(self, timeout_ms: int = 100) -> wire.Message | None:
        deadline = time.monotonic() + timeout_ms / 1000
        src = self.source
        while True:
            if self.queue:
                return self.queue.popleft()
            if self.ended:
                return None
            now = time.monotonic()
            src.tick(now, self.items)
            self._run_items()
            if self.idle_end_s is not None and src.last_data is not None and now - src.last_data > self.idle_end_s:
                log.info("%s silent for %.1f s: ending", src.name, self.idle_end_s)
                src.finish(self.items)
                self._run_items()
                self._emit_end()
                continue
            if self.queue:
                continue
            left = deadline - now
            if left <= 0:
                return None
            ready = dict(self.poller.poll(max(0, min(int(left * 1000), src.max_wait_ms))))
            if self.stim_sock is not None and self.stim_sock in ready:
                self._on_stim()
            if src.sock in ready:
                src.read(self.items)
                self._run_items()

    @property
    def dropped(self) -> int:
        return self.source.dropped_bins

    @property
    def n_rejected(self) -> int:
        return self.rejects.total + self.source.n_rejected

    def counts(self) -> dict:
        out = {"received": dict(self.sent), "rejected": self.n_rejected,
               "rejected_by_reason": self.rejects.by_reason(), "dropped": self.source.dropped_bins,
               "restarts": self.source.restarts, "stim_dropped": self.stim_gaps.missing, **self.source.counts()}
        if self.detect is not None:
            out["crossings"] = self.detect.events
            out["calibrated"] = bool(self.started and self.detect.calibrated)
        return out

    def close(self) -> None:
        if self.stim_sock is not None:
            self.stim_sock.close(linger=0)
        self.source.close()

    # ---------------------------------------------------------------- source items -> extraction -> frames
    def reject(self, detail: str, reason: str = "field") -> None:
        """Count a message the live path cannot use under a fixed `reason` (rtdecode.sources.rejects),
        with a bounded log of its `detail`."""
        self.rejects.reject(reason, detail)

    def _run_items(self) -> None:
        for item in self.items:
            if isinstance(item, Block):
                self._on_block(item)
            else:
                self._on_spikes(item)
        self.items.clear()

    def _on_block(self, b: Block) -> None:
        if not self.started:
            self.chain.start(b.sample_rate, b.sample)
            self.started = True
        elif b.restart:
            self.chain.restart(b.sample)
        elif b.skip:
            self.chain.skip(b.skip)
        if b.bin != self.bin:
            self.bins.clear()
            self.bin = b.bin
        if b.data.shape[0]:
            self.chain.process(b.data)
        if b.closes:
            self._emit(b.bin, b.t, b.received, b.bin_start, b.bin_end, b.partial)

    def _on_spikes(self, sb: SpikeBin) -> None:
        self.bins.clear()
        self.bin = sb.bin
        done, n = 0, sb.samples.shape[0]
        while True:  # every spike of the bin, in event blocks of the stage's capacity
            done += pack_events(sb.samples[done:], sb.inputs[done:], self._events)
            self.chain.process(self._events)
            if done >= n:
                break
        self._emit(sb.bin, sb.t, sb.received, sb.bin_start, sb.bin_end, sb.partial)

    def _emit(self, frame: int, t: float, received: float, start: int, end: int, partial: bool) -> None:
        header = {"v": wire.VERSION, "seq": self.seq, "t": float(t), "dtype": "<f4", "shape": [self.N],
                  "frameNumberAcq": int(frame), "channel": 0, "plane": 0,
                  "bin_start": int(start), "bin_end": int(end), "partial": bool(partial)}
        self.seq += 1
        self.sent["frame"] += 1
        self.queue.append(wire.Message("frame", header, self.bins.counts[0].astype(np.float32), received))

    def _emit_end(self) -> None:
        header = {"v": wire.VERSION, "seq": self.seq, "t": time.time(), "dtype": "|u1", "shape": [0], "end": True}
        self.seq += 1
        self.sent["stats"] += 1
        self.queue.append(wire.Message("stats", header, np.zeros(0, np.uint8), time.perf_counter()))
        self.ended = True

    def _on_stim(self) -> None:
        for _ in range(100):
            if not self.stim_sock.poll(0):
                return
            frames = self.stim_sock.recv_multipart()
            received = time.perf_counter()
            try:
                msg = wire.decode(frames)
            except WireError as exc:
                self.reject(f"stim: {exc}", getattr(exc, "reason", "framing"))
                continue
            except Exception as exc:  # noqa: BLE001 -- one message never ends the session
                self.reject(f"stim: {type(exc).__name__}: {exc}", "internal")
                continue
            if msg.topic != "stim":
                self.reject(f"stim_address: expected topic 'stim', got '{msg.topic[:40]}'", "topic")
                continue
            msg.received = received
            if self.stim_gaps.see(msg.seq) == wire.OTHER:  # a second stimulus publisher on the address
                self.reject(f"stim seq {msg.seq} continues a second publisher's counter on stim_address", "source")
                continue
            self.sent["stim"] += 1
            self.queue.append(msg)


def _ephys_ingest(cfg: RigConfig, stages: list[Stage], make_source, chain, context) -> EphysIngest:
    """The EphysIngest around the source `make_source(host, port, n, reject)` builds (rejects go
    to the ingest's counts), running `chain` (over `stages`, n outputs) on what it delivers."""
    src = cfg.source
    host, port = split_endpoint(src.address[0])
    ingest: EphysIngest | None = None

    def reject(detail: str, reason: str = "field") -> None:
        ingest.reject(detail, reason)

    source = make_source(host, port, stages[-1].out_spec.shape[0], reject)
    ingest = EphysIngest(source, chain, stim_address=src.stim_address, idle_end_s=src.idle_end_s, context=context)
    return ingest


def openephys_ingest(cfg: RigConfig, stages: list[Stage], frame_bytes: int | None = None,
                     context: zmq.Context | None = None) -> EphysIngest:
    """Protocol `openephys` (rtdecode.sources.protocols): the ZMQ Interface client running `stages`
    (from `openephys_stages`, checked and warmed up by the caller) on its blocks."""
    src, ep = cfg.source, cfg.extraction.ephys
    if src.event_broadcaster:
        log.info("source.event_broadcaster is not used by the live loop (continuous data drives it)")
    hb = src.heartbeat
    return _ephys_ingest(cfg, stages, lambda host, port, n, reject: ContinuousSource(
        host, port, n_channels=n, bin_ms=ep.bin_ms, block_samples=ep.block_samples,
        heartbeat_port=src.heartbeat_port, heartbeat_interval_s=hb.interval_s if hb is not None else 2.0,
        stream=src.stream, channels=src.channels, on_reject=reject, context=context), SampleChain(stages), context)


def eventbroadcaster_ingest(cfg: RigConfig, stages: list[Stage], frame_bytes: int | None = None,
                            context: zmq.Context | None = None) -> EphysIngest:
    """Protocol `eventbroadcaster` (rtdecode.sources.protocols): the Event Broadcaster client, its
    sorted spikes binned by `stages` (from `eventbroadcaster_stages`)."""
    src, ep = cfg.source, cfg.extraction.ephys
    return _ephys_ingest(cfg, stages, lambda host, port, n, reject: SortedSpikeSource(
        host, port, n_inputs=n, bin_ms=ep.bin_ms, group_by=src.group_by or "electrode", units=src.units,
        stream=src.stream, on_reject=reject, context=context), Chain(stages), context)
