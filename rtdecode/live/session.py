"""The live loop: ingest -> extract -> activity ring -> decode -> publish, one frame at a time.

The whole stage graph is checked before the first frame. Latency is measured two ways, each kept as
a histogram: from the arrival of a frame message (when the socket handed it over) to the moment its
decoded frame was published (`arrived_to_published_ms`, the pipeline), and from its acquisition
(the sender's `t`, mapped to the local clock by a per-publisher minimum-delay offset estimate:
rtdecode.sources.clock) to the same moment (`acquired_to_published_ms`: includes the time it waited
in the socket queues). Each stage's time per frame too. A frame a stage rejects (wrong shape or
dtype) is counted and skipped; repeated unexpected errors stop the session rather than logging forever.

No message ends the session but a valid end (`stats` with `end: true`) from the acquisition source:
a message that fails anywhere (ingest, stimulus log, stats) is counted under a fixed reason
(rtdecode.sources.rejects) and skipped, triggers off if it was unexpected. Freshness: triggers never
fire on a frame older than `max_age_s` since its acquisition (suppressed, counted, recorded); the
ingest's 'latest' policy processes only the newest frame queued (skipped frames are not lost ones).

Queues and what they do when the pipeline falls behind (nothing grows without bound):
- ingest: the SUB socket's receive high-water mark; beyond it ZeroMQ drops at the sender, and the
  drop shows up as `dropped` (messages, from `seq` gaps) and `lost_frames` (from frameNumberAcq gaps);
- display (the publisher): its send high-water mark; a slow viewer loses old frames (it counts them
  from `seq` gaps on its side), the live loop never waits for it;
- recording: never drops; a bounded chunk queue, and when it is full the live loop waits for the
  disk (backpressure, so any loss happens at ingest, where it is counted); `record_backlog`;
- triggers: never drop; slow sinks have a queue, and when it backs up past its limit the engine
  disables triggers (fail-safe, with the reason) instead of firing late; `triggers.pending`.

The source may go quiet and come back (a restarted acquisition PC): silences longer than
`silence_s` are logged and counted, a frame counter that goes back is counted as a restart.
"""

from __future__ import annotations

import bisect
import json
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from rtdecode.errors import StageError
from rtdecode.sources import wire
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.rejects import Rejects
from rtdecode.latency import Histogram
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.extract.ring import ActivityRing
from rtdecode.stage import Chain

log = logging.getLogger(__name__)


def limit_blas_threads(n: int | None) -> int | None:
    """Set the BLAS thread count of this process (None: leave it); returns the count before.

    On a small rig PC the live loop shares cores with acquisition: two OpenBLAS threads made the
    ridge decoder's mat-vec 4-8x slower than one on 2 cores (they spin and get descheduled every
    frame; benchmarks/results/bench_e2e.json), so live sessions run with 1.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    before = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None)
    if n is not None:
        threadpool_limits(n, user_api="blas")
    return before


@dataclass
class LiveResult:
    """What a session saw. `decoded` and `stimuli` are filled only when collecting (the demo)."""

    frames: int = 0
    published: int = 0
    rejected_frames: int = 0
    errors: int = 0
    latency: Histogram = field(default_factory=Histogram)
    e2e: Histogram = field(default_factory=Histogram)
    decoded: dict = field(default_factory=dict)  # (trial, stim frame) -> (H, W) float32
    stimuli: dict = field(default_factory=dict)  # (trial, stim frame) -> (H, W) uint8
    ended: bool = False
    wall_s: float = 0.0
    lost_frames: int = 0  # gaps in the acquisition frame counter (frameNumberAcq)
    source_restarts: int = 0  # the frame counter went back (the source restarted)
    silences: int = 0  # times the source sent no frame for longer than `silence_s`
    longest_silence_s: float = 0.0
    acquired: Histogram = field(default_factory=Histogram)  # acquisition -> published (clock-corrected)
    skipped_frames: int = 0  # frames not processed by the 'latest' freshness policy
    message_errors: int = 0  # messages whose processing failed (counted, skipped)
    ignored_ends: int = 0  # end messages from a publisher other than the source
    stopped_by: str = ""  # 'source' (a valid end message), 'errors', or '' (time, idle, the user)


class StimulusLog:
    """Which stimulus frame was on screen when: the last `keep` stim messages, searchable by time.

    The images sent with them are kept for the ids kept, at most `max_image_bytes` in all (the
    oldest images are let go first; their ids stay)."""

    def __init__(self, keep: int = 1000, max_image_bytes: int = 64 * 2**20):
        self.times: deque[float] = deque(maxlen=keep)
        self.ids: deque[tuple[int, int]] = deque(maxlen=keep)
        self.images: dict[tuple[int, int], np.ndarray] = {}  # the images of the ids kept, when sent
        self.max_image_bytes = max_image_bytes
        self.image_bytes = 0
        self.images_dropped = 0

    def _drop_image(self, key) -> None:
        img = self.images.pop(key, None)
        if img is not None:
            self.image_bytes -= img.nbytes

    def add(self, t: float, trial: int, frame: int, image: np.ndarray | None = None) -> None:
        if self.times and t < self.times[-1]:
            t = self.times[-1]  # keep the times sorted (bisect): a flip time that goes back is clamped
        if len(self.ids) == self.ids.maxlen:
            self._drop_image(self.ids[0])
        self.times.append(t)
        self.ids.append((trial, frame))
        if image is not None and image.ndim == 2 and image.nbytes <= self.max_image_bytes:
            self._drop_image((trial, frame))
            self.images[(trial, frame)] = image
            self.image_bytes += image.nbytes
            while self.image_bytes > self.max_image_bytes:  # dicts keep insertion order: oldest first
                self._drop_image(next(iter(self.images)))
                self.images_dropped += 1

    def at(self, t: float, tolerance: float = 1e-3) -> tuple[int, int] | None:
        """(trial, frame) shown at time t: the latest stim message sent at or before t."""
        i = bisect.bisect_right(self.times, t + tolerance) - 1
        return self.ids[i] if i >= 0 else None


class LiveSession:
    """Runs `chain` (extraction stages + ring + decode) on every `frame` message of `ingest`."""

    def __init__(self, ingest: Ingest, chain: Chain, publisher: Publisher, lag_min: int,
                 collect: bool = False, max_errors: int = 10, stats_every_s: float = 1.0,
                 recorder: Recorder | None = None, triggers=None, silence_s: float = 1.0,
                 time_stages: bool = True, max_age_s: float | None = 0.05):
        self.ingest, self.chain, self.pub = ingest, chain, publisher
        self.rejects = Rejects("live session", logger=log)
        self.clock = ClockOffset()  # for frames whose ingest gives no acquisition time
        self.max_age_s = max_age_s  # triggers never fire on a frame older than this since acquisition
        if time_stages:
            chain.time_stages()
        self.silence_s = silence_s
        self._last_acq: int | None = None
        self._last_frame: float | None = None  # time.monotonic() of the last frame message
        self._silent = False
        rings = [i for i, s in enumerate(chain.stages) if isinstance(s, ActivityRing)]
        if len(rings) != 1:
            raise StageError(f"the live chain needs exactly one activity ring, found {len(rings)}")
        ring = rings[0]
        bins = chain.stages[ring].history
        # The activity vector of the current frame: the ring's input.
        self.activity_buffer = chain.buffers[ring - 1] if ring > 0 else None
        self.recorder = recorder
        self.triggers = triggers  # a rtdecode.outputs.triggers.TriggerEngine, or None
        self.target_back = bins - 1 + lag_min  # bins between the newest bin and the decoded frame
        self.frame_times: deque[float] = deque(maxlen=max(self.target_back, 0) + 1)
        self.stim = StimulusLog()
        self.collect = collect
        self.max_errors = max_errors
        self.stats_every_s = stats_every_s
        self.result = LiveResult()

    def run(self, seconds: float | None = None, idle_timeout_s: float = 10.0) -> LiveResult:
        """Process messages until the source says it ended, `seconds` pass, or nothing arrives for
        `idle_timeout_s`. No message can end the session otherwise: a message that fails (in the
        ingest or here) is counted under a fixed reason and skipped, and triggers are turned off."""
        res = self.result
        start = time.monotonic()
        last_msg = last_stats = start
        consecutive_errors = 0
        while True:
            now = time.monotonic()
            if seconds is not None and now - start >= seconds:
                break
            if now - last_msg > idle_timeout_s:
                log.warning("no message for %.0f s; stopping", idle_timeout_s)
                break
            if now - last_stats >= self.stats_every_s:
                self._safely(self.publish_stats)
                last_stats = now
            if (self._last_frame is not None and not self._silent
                    and now - self._last_frame > self.silence_s):
                self._silent = True
                log.warning("no frame from the source for %.1f s; waiting for it", now - self._last_frame)
            try:
                msg = self.ingest.receive(timeout_ms=50)
            except Exception as exc:  # noqa: BLE001 -- a receive that raises is a bug in a source: count it
                self._message_failed(exc)
                time.sleep(0.001)  # never a hot loop on a persistent fault
                continue
            if msg is None:
                continue
            last_msg = time.monotonic()
            if msg.topic == "frame":
                try:
                    self._account(msg)
                    self.on_frame(msg)
                    consecutive_errors = 0
                except StageError as exc:
                    res.rejected_frames += 1
                    self.rejects.reject("field", f"frame {msg.header.get('frameNumberAcq')} rejected by a stage: {exc}")
                except Exception:
                    res.errors += 1
                    if self.triggers is not None:
                        self.triggers.disable("a stage raised an error")
                    consecutive_errors += 1
                    log.exception("error processing a frame (%d in a row)", consecutive_errors)
                    if consecutive_errors >= self.max_errors:
                        log.error("%d errors in a row: stopping the session", consecutive_errors)
                        res.stopped_by = "errors"
                        break
                continue
            try:
                if self._other(msg):
                    break
            except Exception as exc:  # noqa: BLE001 -- one message never ends the session
                self._message_failed(exc)
        res.wall_s = time.monotonic() - start
        self._safely(self.publish_stats)
        return res

    def _message_failed(self, exc: BaseException) -> None:
        self.result.message_errors += 1
        self.rejects.error(exc)
        if self.triggers is not None and getattr(exc, "reason", "internal") == "internal":
            self.triggers.disable("a message could not be processed")

    def _safely(self, fn) -> None:
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 -- stats are best effort, never fatal
            self.rejects.reject("internal", f"stats: {type(exc).__name__}: {exc}")

    def _other(self, msg) -> bool:
        """A non-frame message; True if it validly ends the session."""
        res = self.result
        if msg.topic == "stim":
            trial, frame = msg.header.get("trial"), msg.header.get("frame")  # checked by wire.decode; an
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (trial, frame)):  # adapter may not
                self.rejects.reject("field", f"stim: trial and frame must be integers, got {trial!r:.40}, {frame!r:.40}")
                return False
            image = msg.array if msg.array is not None and msg.array.ndim == 2 else None
            self.stim.add(msg.t, trial, frame, image)
            if self.collect and image is not None:
                res.stimuli[(trial, frame)] = image.copy()
            return False
        if msg.topic == "stats" and msg.header.get("end") is True:
            if getattr(msg, "source", 0) != 0:
                res.ignored_ends += 1
                self.rejects.reject("source", "an end message not from the acquisition source: ignored")
                return False
            res.ended = True
            res.stopped_by = "source"
            sent = msg.header.get("frames")  # the sender's count: frames lost at the very end show too
            last = self._last_acq or 0
            if (isinstance(sent, int) and not isinstance(sent, bool)
                    and last < sent <= last + 1 + wire.MAX_GAP):
                res.lost_frames += sent - last
                self._last_acq = sent
            return True
        return False

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
        last = self._last_acq
        if last is not None:
            if last + 1 < acq <= last + 1 + wire.MAX_GAP:
                res.lost_frames += max(0, acq - last - 1 - skipped)
            elif acq < last or acq > last + 1 + wire.MAX_GAP:
                res.source_restarts += 1
                if res.source_restarts <= 10 or res.source_restarts % 1000 == 0:
                    log.warning("the source restarted: frameNumberAcq went from %d to %d (%d restart(s)); following it",
                                last, acq, res.source_restarts)
        self._last_acq = acq

    def on_frame(self, msg) -> None:
        res = self.result
        out = self.chain.process(msg.array)
        ready = time.perf_counter()
        self.frame_times.append(msg.t)
        res.frames += 1
        decodable = len(self.frame_times) > self.target_back
        target = (-1, -1)
        if decodable:
            target_t = self.frame_times[0]
            target = self.stim.at(target_t) or (-1, -1)
            self.pub.send("decoded", out, t=time.time(), trial=target[0], frame=target[1], target_t=target_t,
                          frameNumberAcq=msg.header.get("frameNumberAcq"))
            done = time.perf_counter()
            acquired = msg.acquired or self._acquired(msg)
            res.published += 1
            res.latency.add(done - msg.received)
            res.acquired.add(max(done - acquired, 0.0))
            res.e2e.add(max(time.time() - msg.t, 0.0))
            if self.triggers is not None:
                self.triggers.on_decoded(out, target_t, done - msg.received, ready, trial=target[0],
                                         frame=target[1], frameNumberAcq=msg.header.get("frameNumberAcq"),
                                         acquired=acquired, max_age_s=self.max_age_s)
            if self.collect and target[0] >= 0:
                res.decoded[target] = out.copy()
        activity = self.activity_buffer if self.activity_buffer is not None else msg.array
        self.pub.send("activity", activity, t=msg.t, frameNumberAcq=msg.header.get("frameNumberAcq"))
        if self.recorder is not None:
            # Acquisition frame counter (ScanImage's frameNumberAcq) so gaps mean lost frames.
            shown = self.stim.at(msg.t) or (-1, -1)
            self.recorder.add(int(msg.header.get("frameNumberAcq", msg.seq)), msg.t, activity, out if decodable else None,
                              shown, target, time.perf_counter() - msg.received, self.stim.images.get(shown))

    def _acquired(self, msg) -> float:
        """Acquisition time (perf_counter clock) of a frame its ingest did not map (the Open Ephys
        adapters): its `t` through this session's own clock-offset estimate."""
        excess = self.clock.see(msg.t, time.time() - (time.perf_counter() - msg.received))
        return msg.received - excess

    def stats(self) -> dict:
        r = self.result
        out = {"frames": r.frames, "published": r.published, "rejected_frames": r.rejected_frames,
               "errors": r.errors, "latency_ms": r.latency.summary_ms(), **self.ingest.counts(),
               "arrived_to_published_ms": _p50_p99(r.latency), "acquired_to_published_ms": _p50_p99(r.acquired),
               "e2e_ms": r.e2e.summary_ms(), "stages_ms": self.chain.stage_summary_ms(),
               "lost_frames": r.lost_frames, "source_restarts": r.source_restarts, "silences": r.silences,
               "longest_silence_s": round(r.longest_silence_s, 3), "skipped_frames": r.skipped_frames,
               "message_errors": r.message_errors, "ignored_ends": r.ignored_ends, "stopped_by": r.stopped_by,
               "session_rejected_by_reason": self.rejects.by_reason(),
               "stimulus_images_dropped": self.stim.images_dropped,
               **({"clock_adapter": self.clock.summary()} if self.clock.n else {})}
        if self.triggers is not None:
            out["triggers"] = self.triggers.stats()
        if self.recorder is not None:
            rec = self.recorder
            out["recorded"] = rec.written
            out["record_errors"] = rec.errors
            out["records_lost"] = rec.lost
            out["record_backlog"] = rec.backlog
            out["record_backlog_max"] = rec.backlog_max
            out["record_wait_s"] = round(rec.blocked_s, 4)
        return out

    def publish_stats(self) -> None:
        stats = self.stats()
        if len(json.dumps(stats, default=str)) > MAX_STATS_BYTES:  # never a huge message out of our counters
            stats = {k: v for k, v in stats.items() if not isinstance(v, dict) or k in _SMALL_STATS}
            stats["truncated"] = True
        self.pub.send("stats", None, **stats)


MAX_STATS_BYTES = 32 * 1024
_SMALL_STATS = ("latency_ms", "acquired_to_published_ms", "arrived_to_published_ms", "e2e_ms", "triggers")


def _p50_p99(h: Histogram) -> dict:
    s = h.summary_ms()
    return {"p50": s["p50"], "p99": s["p99"]}
