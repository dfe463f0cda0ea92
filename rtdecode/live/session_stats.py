"""The live session's counters and its `stats` message: what `LiveSession` (rtdecode.live.session)
saw (`LiveResult`), the accounting of each frame's number (lost frames, source restarts, repeats,
a second publisher, silences) and the stats published every `stats_every_s` and at the end
(end.json), with their size limit."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from dataclasses import dataclass, field

from rtdecode.extract.planes import REASONS as IGNORE_REASONS
from rtdecode.latency import Histogram
from rtdecode.sources import wire

log = logging.getLogger("rtdecode.live.session")

MAX_STATS_BYTES = 32 * 1024
_SMALL_STATS = ("latency_ms", "acquired_to_published_ms", "arrived_to_published_ms", "e2e_ms", "triggers",
                "live_quality")


def _p50_p99(h: Histogram) -> dict:
    s = h.summary_ms()
    return {"p50": s["p50"], "p99": s["p99"]}


@dataclass
class LiveResult:
    """What a session saw. `decoded` and `stimuli` are filled only when collecting (the demo)."""

    frames: int = 0
    published: int = 0
    rejected_frames: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    e2e: Histogram = field(default_factory=Histogram)  # the sender's t -> published: includes its clock offset
    decoded: dict = field(default_factory=dict)  # (trial, stim frame) -> (H, W) float32
    stimuli: dict = field(default_factory=dict)  # (trial, stim frame) -> (H, W) uint8
    ended: bool = False
    wall_s: float = 0.0
    lost_frames: int = 0  # gaps in the acquisition frame counter (frameNumberAcq)
    source_restarts: int = 0  # the frame counter went back (the source restarted)
    repeated_frames: int = 0  # frames whose frameNumberAcq repeated the one before
    other_publisher_frames: int = 0  # frames of a second publisher on the source's address that got through
    silences: int = 0  # times the source sent no frame for longer than `silence_s`
    longest_silence_s: float = 0.0
    ignored: Counter = field(default_factory=Counter)  # frames not extracted, by reason (extract.planes.REASONS)
    acquired: Histogram = field(default_factory=Histogram)  # acquisition -> published (clock-corrected)
    skipped_frames: int = 0  # frames not processed by the 'latest' freshness policy
    message_errors: int = 0  # messages whose processing failed (counted, skipped)
    ignored_ends: int = 0  # end messages from a publisher other than the source
    stopped_by: str = ""  # 'source' (a valid end message), 'errors', 'signal SIGTERM' / 'signal SIGINT', or '' (time, idle)
    uncertainty: dict = field(default_factory=dict)  # (trial, stim frame) -> (H, W) float32 spread (collecting)
    uncertainty_published: int = 0
    uncertainty_time: Histogram = field(default_factory=Histogram)  # the spread's computation + publish, per frame
    uncertainty_errors: int = 0


class SessionCounters:
    """LiveSession's accounting and stats (a mixin: the attributes are the session's, set in its
    __init__: result, ingest, rejects, clock, stim_clock, planes, recorder, triggers, pub, ...)."""

    def _account(self, msg) -> None:
        """Count lost frames (frameNumberAcq gaps, less the frames skipped on purpose), source
        restarts (the counter went back, or jumped absurdly far) and silences."""
        res = self.result
        now = time.monotonic()
        if self._last_frame is not None:
            quiet = now - self._last_frame
            if quiet > self.silence_s:
                res.silences += 1
                res.longest_silence_s = max(res.longest_silence_s, quiet)
                log.warning("frames resumed after %.1f s of silence (%d silence(s) so far)", quiet, res.silences)
        self._last_frame, self._silent = now, False
        skipped = getattr(msg, "skipped", 0)
        res.skipped_frames += skipped
        acq = msg.header.get("frameNumberAcq")
        if not isinstance(acq, int) or isinstance(acq, bool):
            return
        if getattr(msg, "after_other", False) and self._acct is not None:
            # the frame before was a second publisher's on the same address (the ingest rejects the
            # rest of its messages): what it counted (a jump of the frame counter) is taken back
            prev, lost, restarted = self._acct
            res.lost_frames -= lost
            res.source_restarts -= restarted
            res.other_publisher_frames += 1
            self._last_acq = prev
        last = self._last_acq
        lost = restarted = 0
        if last is not None:
            if last + 1 < acq <= last + 1 + wire.MAX_GAP:
                lost = max(0, acq - last - 1 - skipped)
            elif acq < last or acq > last + 1 + wire.MAX_GAP:
                restarted = 1
                if res.source_restarts < 10 or (res.source_restarts + 1) % 1000 == 0:
                    log.warning("the source restarted: frameNumberAcq went from %d to %d (%d restart(s)); following it",
                                last, acq, res.source_restarts + 1)
            elif acq == last:
                res.repeated_frames += 1
        res.lost_frames += lost
        res.source_restarts += restarted
        self._acct = (last, lost, restarted)
        self._last_acq = acq

    def stats(self, final: bool = False) -> dict:
        """The session's counters and latencies (published every `stats_every_s` as 'stats'); `final`
        (the end of the session: end.json) adds what is too slow to compute every second (the
        uncertainty calibration's binned table)."""
        r = self.result
        out = {"frames": r.frames, "published": r.published, "rejected_frames": r.rejected_frames,
               "errors": r.errors, "latency_ms": r.latency.summary_ms(), **self.ingest.counts(),
               "arrived_to_published_ms": _p50_p99(r.latency), "acquired_to_published_ms": _p50_p99(r.acquired),
               "e2e_ms": r.e2e.summary_ms(), "stages_ms": self.stage_summary_ms(),
               "lost_frames": r.lost_frames, "source_restarts": r.source_restarts, "silences": r.silences,
               "repeated_frames": r.repeated_frames, "other_publisher_frames": r.other_publisher_frames,
               "longest_silence_s": round(r.longest_silence_s, 3), "skipped_frames": r.skipped_frames,
               "message_errors": r.message_errors, "ignored_ends": r.ignored_ends, "stopped_by": r.stopped_by,
               "session_rejected_by_reason": self.rejects.by_reason(),
               "stimulus_images_dropped": self.stim.images_dropped,
               **({"clock_adapter": self.clock.summary()} if self.clock.n else {}),
               **({"clock_adapter_stim": self.stim_clock.summary()} if self.stim_clock.n else {}),
               **({"flips": self.flips.stats()} if self.flips is not None else {}),
               **({"cpu": self.placement.summary()} if self.placement is not None else {}),
               **({"live_quality": self.score.summary()} if self.score is not None else {})}

        if self.planes is not None:
            out["ignored_frames"] = {k: r.ignored.get(k, 0) for k in IGNORE_REASONS}
            if self.raw_shape is not None and (self.raw_only or self.raw_budget is not None):
                out["ignored_frames"]["frame_shape"] = r.ignored.get("frame_shape", 0)
            if self.planes.chains is not None and len(self.planes.fields) > 1:
                out["incomplete_volumes"] = self.planes.incomplete
        if self.raw_budget is not None:
            out["raw_frames_recorded"] = min(self.raw_kept, self.raw_budget)
        if self.triggers is not None:
            out["triggers"] = self.triggers.stats()
        if self.uncertainty is not None:
            out["uncertainty"] = {"published": r.uncertainty_published, "errors": r.uncertainty_errors,
                                  "folds": self.uncertainty.k, "ms": _p50_p99(r.uncertainty_time),
                                  "calibration": self.calibration.summary(bins=final)}
        if getattr(self, "refiner", None) is not None:  # rtdecode.live.refiner
            out["refined"] = self.refiner.stats()
        if self.recorder is not None:
            rec = self.recorder
            out["recorded"] = rec.written
            out["record_errors"] = rec.errors
            out["records_lost"] = rec.lost
            out["record_backlog"] = rec.backlog
            out["record_backlog_max"] = rec.backlog_max
            out["record_wait_s"] = round(rec.blocked_s, 4)
            out["record_retries"] = rec.transient_errors
        peers = self.peers()
        if peers:
            out["peers"] = peers
        return out

    def peers(self) -> dict:
        """{socket: {peers, peers_max, limit, refused, accept_failed}} of the sockets this session binds
        with a peer limit (the decoded stream, zmq triggers)."""
        out = {}
        if callable(getattr(self.pub, "peers", None)) and self.pub.peers():
            out["decoded"] = self.pub.peers()
        for rule in getattr(self.triggers, "rules", None) or ():
            for sink in rule.sinks or ():
                pub = getattr(sink, "pub", None)
                if callable(getattr(pub, "peers", None)) and pub.peers():
                    out[f"trigger {rule.name}"] = pub.peers()
        return out

    def stage_summary_ms(self) -> dict:
        """{stage name: {p50, p99, max, n} in ms}: the extraction's stages (if any), then the chain's."""
        out = {} if self.extraction is None else self.extraction.stage_summary_ms()
        if self.planes is not None:
            out |= self.planes.stage_summary_ms()
        return out | ({} if self.chain is None else self.chain.stage_summary_ms())

    def publish_stats(self) -> None:
        stats = self.stats()
        if len(json.dumps(stats, default=str)) > MAX_STATS_BYTES:  # never a huge message out of our counters
            stats = {k: v for k, v in stats.items() if not isinstance(v, dict) or k in _SMALL_STATS}
            stats["truncated"] = True
        self.pub.send("stats", None, **stats)
