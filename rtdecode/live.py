"""The live loop: ingest -> extract -> activity ring -> decode -> publish, one frame at a time.

The whole stage graph is checked before the first frame. Latency is measured from the arrival of a
frame message (when the socket handed it over) to the moment its decoded frame was published, and
kept as a histogram. A frame a stage rejects (wrong shape or dtype) is counted and skipped; repeated
unexpected errors stop the session rather than logging forever.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import deque
from dataclasses import dataclass, field


from rtdecode.errors import StageError
from rtdecode.ingest import Ingest
from rtdecode.latency import Histogram
from rtdecode.publish import Publisher
from rtdecode.record import Recorder
from rtdecode.ring import ActivityRing
from rtdecode.stage import Chain

log = logging.getLogger(__name__)


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


class StimulusLog:
    """Which stimulus frame was on screen when: the last `keep` stim messages, searchable by time."""

    def __init__(self, keep: int = 1000):
        self.times: deque[float] = deque(maxlen=keep)
        self.ids: deque[tuple[int, int]] = deque(maxlen=keep)

    def add(self, t: float, trial: int, frame: int) -> None:
        self.times.append(t)
        self.ids.append((trial, frame))

    def at(self, t: float, tolerance: float = 1e-3) -> tuple[int, int] | None:
        """(trial, frame) shown at time t: the latest stim message sent at or before t."""
        i = bisect.bisect_right(self.times, t + tolerance) - 1
        return self.ids[i] if i >= 0 else None


class LiveSession:
    """Runs `chain` (extraction stages + ring + decode) on every `frame` message of `ingest`."""

    def __init__(self, ingest: Ingest, chain: Chain, publisher: Publisher, lag_min: int,
                 collect: bool = False, max_errors: int = 10, stats_every_s: float = 1.0,
                 recorder: Recorder | None = None, triggers=None):
        self.ingest, self.chain, self.pub = ingest, chain, publisher
        rings = [i for i, s in enumerate(chain.stages) if isinstance(s, ActivityRing)]
        if len(rings) != 1:
            raise StageError(f"the live chain needs exactly one activity ring, found {len(rings)}")
        ring = rings[0]
        bins = chain.stages[ring].history
        # The activity vector of the current frame: the ring's input.
        self.activity_buffer = chain.buffers[ring - 1] if ring > 0 else None
        self.recorder = recorder
        self.triggers = triggers  # a rtdecode.triggers.TriggerEngine, or None
        self.target_back = bins - 1 + lag_min  # bins between the newest bin and the decoded frame
        self.frame_times: deque[float] = deque(maxlen=max(self.target_back, 0) + 1)
        self.stim = StimulusLog()
        self.collect = collect
        self.max_errors = max_errors
        self.stats_every_s = stats_every_s
        self.result = LiveResult()

    def run(self, seconds: float | None = None, idle_timeout_s: float = 10.0) -> LiveResult:
        """Process messages until the sender says it ended, `seconds` pass, or nothing arrives for
        `idle_timeout_s`."""
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
                self.publish_stats()
                last_stats = now
            msg = self.ingest.receive(timeout_ms=50)
            if msg is None:
                continue
            last_msg = time.monotonic()
            if msg.topic == "stim":
                self.stim.add(msg.t, int(msg.header["trial"]), int(msg.header["frame"]))
                if self.collect:
                    res.stimuli[(int(msg.header["trial"]), int(msg.header["frame"]))] = msg.array.copy()
            elif msg.topic == "stats" and msg.header.get("end"):
                res.ended = True
                break
            elif msg.topic == "frame":
                try:
                    self.on_frame(msg)
                    consecutive_errors = 0
                except StageError as exc:
                    res.rejected_frames += 1
                    log.warning("frame %s rejected: %s", msg.header.get("frameNumberAcq"), exc)
                except Exception:
                    res.errors += 1
                    if self.triggers is not None:
                        self.triggers.disable("a stage raised an error")
                    consecutive_errors += 1
                    log.exception("error processing a frame (%d in a row)", consecutive_errors)
                    if consecutive_errors >= self.max_errors:
                        log.error("%d errors in a row: stopping the session", consecutive_errors)
                        break
        res.wall_s = time.monotonic() - start
        self.publish_stats()
        return res

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
            res.published += 1
            res.latency.add(done - msg.received)
            res.e2e.add(max(time.time() - msg.t, 0.0))
            if self.triggers is not None:
                self.triggers.on_decoded(out, target_t, done - msg.received, ready, trial=target[0],
                                         frame=target[1], frameNumberAcq=msg.header.get("frameNumberAcq"))
            if self.collect and target[0] >= 0:
                res.decoded[target] = out.copy()
        activity = self.activity_buffer if self.activity_buffer is not None else msg.array
        self.pub.send("activity", activity, t=msg.t, frameNumberAcq=msg.header.get("frameNumberAcq"))
        if self.recorder is not None:
            # Acquisition frame counter (ScanImage's frameNumberAcq) so gaps mean lost frames.
            self.recorder.add(int(msg.header.get("frameNumberAcq", msg.seq)), msg.t, activity, out if decodable else None,
                              self.stim.at(msg.t) or (-1, -1), target, time.perf_counter() - msg.received)

    def stats(self) -> dict:
        r = self.result
        out = {"frames": r.frames, "published": r.published, "rejected_frames": r.rejected_frames,
               "errors": r.errors, "latency_ms": r.latency.summary_ms(), **self.ingest.counts()}
        if self.triggers is not None:
            out["triggers"] = self.triggers.stats()
        if self.recorder is not None:
            out["recorded"] = self.recorder.written
            out["record_errors"] = self.recorder.errors
        return out

    def publish_stats(self) -> None:
        self.pub.send("stats", None, **self.stats())
