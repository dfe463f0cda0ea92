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
fire on a frame older than `max_age_s` since its acquisition, on one whose `t` is off its publisher's
clock (a `t` far ahead, a clock step not yet confirmed: its age is unknown), or while the ingest is
congested (at its high-water mark or dropping); each is suppressed, counted and recorded, and such a
frame adds nothing to the acquisition latency histogram when its time is unknown. The ingest's
'latest' policy processes only the newest frame queued (skipped frames are not lost ones).

Queues and what they do when the pipeline falls behind (nothing grows without bound):
- ingest: the SUB socket's receive high-water mark; beyond it ZeroMQ drops at the sender, and the
  drop shows up as `dropped` (messages, from `seq` gaps) and `lost_frames` (from frameNumberAcq gaps);
- display (the publisher): its send high-water mark; a slow viewer loses old frames (it counts them
  from `seq` gaps on its side), the live loop never waits for it;
- recording: never drops; a bounded chunk queue, and when it is full the live loop waits for the
  disk (backpressure, so any loss happens at ingest, where it is counted); `record_backlog`;
- triggers: never drop; slow sinks have a queue, and when it backs up past its limit the engine
  disables triggers (fail-safe, with the reason) instead of firing late; `triggers.pending`.

SIGTERM and SIGINT (StopOnSignals, rtdecode.live.signals) end the loop at its next turn, the
same way as the end of the source: the caller then flushes and closes the recording.

The source may go quiet and come back (a restarted acquisition PC): silences longer than
`silence_s` are logged and counted, a frame counter that goes back is counted as a restart.

One clock for matching stimulus to frames: the stimulus PC and the acquisition PC each stamp `t` on
their own clock, so the loop compares their `msg.local_t` only (the sender's `t` on this PC's wall
clock through that publisher's minimum-delay offset estimate: rtdecode.sources.clock; the residual
error is the bare one-way transport, not the offset). The ingest sets it; for messages built by an
adapter (the Open Ephys adapters, ScanImage's native stream) the session maps them itself, with one
ClockOffset for frames and one for stim messages. The stimulus log, the decoded frame's target and
the recorder's `shown` all use local times; what is published and recorded keeps the sender's `t`
(`target_t`, the recording's `t`), with the local time beside it (`target_local_t`, `local_t`).

Flip times (`flips`, rtdecode.sources.flips.TtlFlips): with a photodiode or frame-clock TTL on the
Open Ephys Event Broadcaster, stim messages go through a FlipAligner and enter the stimulus log at
their edge's time (unmatched ones at their own); the TTL socket is read every loop turn (the receive
timeout is then short, `FLIP_POLL_MS`), and its counts go into the stats under `flips`.

Per-pixel uncertainty (`uncertainty`, a rtdecode.live.uncertainty.LiveUncertainty: an image-prior model's
fold ensemble): after the decoded frame is published, handed to the triggers and the activity sent, the
K fold ridges run on the same activity window and their spread goes out as an 'uncertainty' message
((H, W) float32, 0-255 scale) with the decoded frame's fields and `t`, and into the recording's extra
'uncertainty'. Its time per frame is `uncertainty.ms` in the stats; when the target stimulus image is
known, the spread's calibration against |decoded - stimulus| is `uncertainty.calibration`
(rtdecode.live.uncertainty.SpreadCalibration; with its binned table in the final stats).

Refined stream (`refiner`, a rtdecode.live.refiner.LiveRefiner: the warm-start iterative inverse in a
background process): last of all per frame, the refiner is handed the frame and polled without blocking;
what it sends back goes out as 'refined', into the recording's extras 'refined' / 'refined_of', and into
the stats under 'refined' (see that module's doc).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from contextlib import nullcontext

import numpy as np

from rtdecode.errors import StageError
from rtdecode.sources import wire
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.ingest import Ingest
from rtdecode.sources.rejects import Rejects
from rtdecode.metrics import LiveScore
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.record import Recorder
from rtdecode.extract.planes import Planes
from rtdecode.extract.ring import ActivityRing
from rtdecode.stage import Chain
from rtdecode.live.cpu import Placement, limit_blas_threads
from rtdecode.live.session_stats import LiveResult, SessionCounters
from rtdecode.live.signals import StopOnSignals
from rtdecode.live.stimulus_log import StimulusLog
from rtdecode.live.taps import extraction_taps, plane_taps
from rtdecode.live.uncertainty import LiveUncertainty, SpreadCalibration

log = logging.getLogger(__name__)

FLIP_POLL_MS = 2  # the longest the loop waits for a message while TTL edges may be queued


class LiveSession(SessionCounters):
    """Runs `chain` (extraction stages + ring + decode) on every `frame` message of `ingest`.

    extraction: stages the ingest runs itself before a frame exists (Open Ephys: per block of
    samples, rtdecode.live.ephys); the session times them and reports them first in `stages_ms`.
    planes: which frames are extracted (rtdecode.extract.planes.Planes: one channel, some planes,
    some scan ROIs); the others are counted in `ignored_frames` by reason. With per-field chains, `chain` starts at
    the activity ring and gets one activity vector per volume (`frames` then counts volumes).
    decode: False for a calibration block: `chain` is the extraction only (None: nothing after the
    per-plane chains), no decoded frame is published, the recorder gets activity and stimulus.
    flips: a rtdecode.sources.flips.TtlFlips (hardware flip times for the stim messages), or None.
    raw_frames: record each extracted frame's raw image (the recorder's extras 'raw' and 'raw_saved') for
    at most this many frames (None: none); raw_shape: the acquisition frame's (H, W). With no chain and
    no per-plane chains (a new field of view: no ROIs yet) nothing is extracted: the activity recorded
    is empty, frames of another shape than raw_shape are ignored (`ignored['frame_shape']`).
    placement: a rtdecode.live.cpu.Placement entered for the run (the loop's CPU and priority), or None.
    uncertainty: a rtdecode.live.uncertainty.LiveUncertainty (the model's fold ensemble): publish its spread
    per decoded frame as 'uncertainty' (see the module doc); None (or no decoder): none."""

    def __init__(self, ingest: Ingest, chain: Chain | None, publisher: Publisher, lag_min: int = 0,
                 collect: bool = False, max_errors: int = 10, stats_every_s: float = 1.0,
                 recorder: Recorder | None = None, triggers=None, silence_s: float = 1.0,
                 time_stages: bool = True, extraction: Chain | None = None, planes: Planes | None = None,
                 decode: bool = True, max_age_s: float | None = 0.05, flips=None,
                 raw_frames: int | None = None, raw_shape: tuple[int, int] | None = None,
                 placement: Placement | None = None, uncertainty: LiveUncertainty | None = None,
                 refiner=None):
        self.ingest, self.chain, self.pub = ingest, chain, publisher
        self.raw_budget, self.raw_shape, self.raw_kept = raw_frames, raw_shape, 0
        self.raw_only = chain is None and extraction is None and (planes is None or planes.chains is None)
        self._no_activity = np.zeros(0, np.float32)
        # Stages the ingest runs before the frames reach `chain` (ephys: per block, not per bin);
        # only timed and reported here.
        self.extraction = extraction
        self.planes = planes
        self.decode = decode
        self.rejects = Rejects("live session", logger=log)
        self.clock = ClockOffset()  # for frames whose ingest gives no acquisition time
        self.stim_clock = ClockOffset()  # for stim messages whose ingest gives no local time
        self.flips = flips
        self.placement = placement
        self.max_age_s = max_age_s  # triggers never fire on a frame older than this since acquisition
        if time_stages:
            if chain is not None:
                chain.time_stages()
            if extraction is not None:
                extraction.time_stages()
            if planes is not None:
                planes.time_stages()
        self.silence_s = silence_s
        self._last_acq: int | None = None
        self._acct: tuple | None = None  # (previous frameNumberAcq, lost, restart) counted for the last frame
        self._last_frame: float | None = None  # time.monotonic() of the last frame message
        self._silent = False
        stages = [] if chain is None else chain.stages
        rings = [i for i, s in enumerate(stages) if isinstance(s, ActivityRing)]
        if decode and len(rings) != 1:
            raise StageError(f"the live chain needs exactly one activity ring, found {len(rings)}")
        if not decode and (rings or triggers is not None):
            raise StageError("a session without a decoder takes no activity ring and no triggers")
        if decode:
            ring = rings[0]
            bins = chain.stages[ring].history
            # The activity vector of the current frame: the ring's input.
            self.activity_buffer = chain.buffers[ring - 1] if ring > 0 else None
            self.window_buffer = chain.buffers[ring]  # the decode stage's input, (N, bins)
        else:
            bins = 1
            self.activity_buffer = None  # the extraction's output is the activity
            self.window_buffer = None
        self.uncertainty = uncertainty if decode else None
        self.calibration = SpreadCalibration() if self.uncertainty is not None else None
        self.recorder = recorder
        taps = extraction_taps(chain) if planes is None or planes.chains is None else plane_taps(planes)
        self.taps = {k: g for k, (g, _, _) in taps.items() if recorder is not None and k in recorder.extras}
        self.triggers = triggers  # a rtdecode.outputs.triggers.TriggerEngine, or None
        self.target_back = bins - 1 + lag_min  # bins between the newest bin and the decoded frame
        # (local time, sender's t) of the last frames: the decoded frame's target is the oldest
        self.frame_times: deque[tuple[float, float]] = deque(maxlen=max(self.target_back, 0) + 1)
        self.stim = StimulusLog()
        self.collect = collect
        self.max_errors = max_errors
        self.stats_every_s = stats_every_s
        self.result = LiveResult()
        self._stim_shape_warned = False
        self.score = LiveScore() if decode else None  # live pixel_corr against the stimulus (full frame)
        self.stop_reason: str | None = None  # set by stop(): the loop ends at its next turn
        self.refiner = refiner if decode else None  # rtdecode.live.refiner.LiveRefiner, or None
        if self.refiner is not None:
            self.refiner.attach(publisher, self.stim, self.target_back, collect)

    def stop(self, reason: str) -> None:
        """Ask the loop to end at its next turn (e.g. on SIGTERM: StopOnSignals); safe to call
        from a signal handler (sets one attribute)."""
        self.stop_reason = reason

    def run(self, seconds: float | None = None, idle_timeout_s: float = 10.0) -> LiveResult:
        """Process messages until the source says it ended, `seconds` pass, or nothing arrives for
        `idle_timeout_s`. No message can end the session otherwise: a message that fails (in the
        ingest or here) is counted under a fixed reason and skipped, and triggers are turned off."""
        with self.placement if self.placement is not None else nullcontext():
            return self._run(seconds, idle_timeout_s)

    def _run(self, seconds: float | None, idle_timeout_s: float) -> LiveResult:
        res = self.result
        start = time.monotonic()
        last_msg = last_stats = start
        consecutive_errors = 0
        while True:
            if self.stop_reason is not None:
                log.warning("stopping: %s", self.stop_reason)
                res.stopped_by = self.stop_reason
                break
            now = time.monotonic()
            if seconds is not None and now - start >= seconds:
                break
            if now - last_msg > idle_timeout_s:
                log.warning("no message for %.0f s; stopping", idle_timeout_s)
                break
            if now - last_stats >= self.stats_every_s:
                self._safely(self.publish_stats)
                if self.placement is not None:
                    self._safely(self.placement.refresh)  # I/O threads started since (e.g. a redial)
                last_stats = now
            if (self._last_frame is not None and not self._silent
                    and now - self._last_frame > self.silence_s):
                self._silent = True
                log.warning("no frame from the source for %.1f s; waiting for it", now - self._last_frame)
            if self.flips is not None:
                self._safely(self._poll_flips)
            try:
                msg = self.ingest.receive(timeout_ms=50 if self.flips is None else FLIP_POLL_MS)
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
            t = self._local(msg)
            if self.flips is not None:
                self.flips.aligner.add_stim(t, (trial, frame, image))
                self._poll_flips()
            else:
                self.stim.add(t, trial, frame, image)
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

    def on_frame(self, msg) -> None:
        res = self.result
        local_t = self._local(msg)  # every frame feeds the clock estimate, extracted or not
        if self.flips is not None:
            self._poll_flips()  # the stimulus log as complete as it can be for this frame
        inp = msg.array
        if self.planes is not None:
            why = self.planes.ignore(msg.header)
            if why is not None:
                res.ignored[why] += 1
                return
            if self.planes.chains is not None:
                inp = self.planes.add(msg.header["plane"], msg.array, msg.header.get("roi", 1))
                if inp is None:  # not the volume's last field (plane, scan ROI) yet
                    return
        raw = None
        if self.raw_only or self.raw_budget is not None:
            if self.raw_shape is not None and tuple(inp.shape) != tuple(self.raw_shape):
                res.ignored["frame_shape"] += 1
                return
            if self.raw_budget is not None:
                if self.raw_kept < self.raw_budget:
                    raw = inp
                    self.raw_kept += 1
                elif self.raw_kept == self.raw_budget:
                    self.raw_kept += 1  # warn once
                    log.warning("outputs.raw_frames: max_gib reached after %d frames; later raw frames are not "
                                "recorded", self.raw_budget)
        out = inp if self.chain is None else self.chain.process(inp)
        ready = time.perf_counter()
        self.frame_times.append((local_t, msg.t))
        res.frames += 1
        decodable = self.decode and len(self.frame_times) > self.target_back
        target = (-1, -1)
        if decodable:
            target_local_t, target_t = self.frame_times[0]
            target = self.stim.at(target_local_t) or (-1, -1)
            t_pub = time.time()
            self.pub.send("decoded", out, t=t_pub, trial=target[0], frame=target[1], target_t=target_t,
                          target_local_t=target_local_t, frameNumberAcq=msg.header.get("frameNumberAcq"))
            done = time.perf_counter()
            acquired = msg.acquired
            res.published += 1
            res.latency.add(done - msg.received)
            if not msg.clock_rejected:  # a `t` off its publisher's clock is no latency
                res.acquired.add(max(done - acquired, 0.0))
                res.e2e.add(max(time.time() - msg.t, 0.0))
            if self.triggers is not None:
                # no trigger on a frame whose time is unknown, or while the ingest is congested
                suppress = "clock" if msg.clock_rejected else "congested" if msg.congested else None
                self.triggers.on_decoded(out, target_t, done - msg.received, ready, trial=target[0],
                                         frame=target[1], frameNumberAcq=msg.header.get("frameNumberAcq"),
                                         acquired=acquired, max_age_s=self.max_age_s, suppress=suppress,
                                         # as old as the clock estimate allows: never judged fresher than it is
                                         age_margin=msg.age_margin)
            if self.collect and target[0] >= 0:
                res.decoded[target] = out.copy()
            if target[0] >= 0:
                shown_image = self.stim.images.get(target)
                if shown_image is not None:
                    self.score.add(target[0], target[1], out, shown_image)
        if self.raw_only:
            activity = self._no_activity
        elif not self.decode:
            activity = out
        else:
            activity = self.activity_buffer if self.activity_buffer is not None else inp
        if activity.size:
            self.pub.send("activity", activity, t=msg.t, frameNumberAcq=msg.header.get("frameNumberAcq"))
        spread = None
        if decodable and self.uncertainty is not None:  # after everything the closed loop waits for
            spread = self._spread(out, target, t_pub, target_t, target_local_t, msg.header.get("frameNumberAcq"))
        refined = None
        if self.refiner is not None:  # hands over and polls, never waits (rtdecode.live.refiner)
            refined = self.refiner.on_frame(activity, out if decodable else None, (
                msg.header.get("frameNumberAcq"), target, target_t, target_local_t, msg.acquired,
                msg.clock_rejected) if decodable else None)
        if self.recorder is not None:
            # Acquisition frame counter (ScanImage's frameNumberAcq) so gaps mean lost frames.
            i = self.stim.find(local_t)
            shown = (-1, -1) if i is None else self.stim.ids[i]
            image = self.stim.images.get(shown)
            if image is not None and image.shape != self.recorder.shape and not self._stim_shape_warned:
                self._stim_shape_warned = True
                log.warning("stimulus images are %s but the session records %s: they are not recorded",
                            image.shape, self.recorder.shape)
            extras = {k: g() for k, g in self.taps.items()} if self.taps else None
            if self.raw_budget is not None:
                extras = (extras or {}) | ({"raw": raw, "raw_saved": True} if raw is not None else {})
            if spread is not None:
                extras = (extras or {}) | {"uncertainty": spread}
            if refined is not None:
                extras = (extras or {}) | refined
            self.recorder.add(int(msg.header.get("frameNumberAcq", msg.seq)), msg.t, activity, out if decodable else None,
                              shown, target, time.perf_counter() - msg.received, image, extras,
                              local_t=local_t, shown_t=float("nan") if i is None else self.stim.times[i])

    def _spread(self, decoded: np.ndarray, target: tuple[int, int], t_pub: float, target_t: float,
                target_local_t: float, acq) -> np.ndarray | None:
        """The decoded frame's per-pixel uncertainty ((H, W) float32, 0-255 scale) from the activity window
        it was decoded from: published as 'uncertainty' with the decoded frame's fields, timed, scored
        against the target's stimulus image when it is known. None if it failed (counted, logged, and
        the frame goes on: the decoded frame is out already)."""
        res = self.result
        t0 = time.perf_counter()
        try:
            spread = self.uncertainty.compute(self.window_buffer)
            self.pub.send("uncertainty", spread, t=t_pub, trial=target[0], frame=target[1], target_t=target_t,
                          target_local_t=target_local_t, frameNumberAcq=acq)
        except Exception:  # noqa: BLE001 -- the decoded frame is published; never lose the frame for this
            res.uncertainty_errors += 1
            if res.uncertainty_errors <= 3:
                log.exception("per-pixel uncertainty failed (%d time(s)); the decoded stream goes on",
                              res.uncertainty_errors)
            return None
        res.uncertainty_time.add(time.perf_counter() - t0)
        res.uncertainty_published += 1
        if target[0] >= 0:
            image = self.stim.images.get(target)
            if image is not None:
                self.calibration.add(spread, decoded, image, target[1])
            if self.collect:
                res.uncertainty[target] = spread.copy()
        return spread

    def _local(self, msg) -> float:
        """The message's time on this PC's wall clock (`msg.local_t`). A message its ingest did not
        map (the Open Ephys adapters, ScanImage's native stream) goes through this session's own
        estimate, one per topic (frames and stim messages come from different publishers), which
        also gives a frame its acquisition time (`msg.acquired`, perf_counter clock)."""
        if msg.local_t:
            return msg.local_t
        clock = self.clock if msg.topic == "frame" else self.stim_clock
        received = msg.received or time.perf_counter()
        wall = time.time() - (time.perf_counter() - received)
        excess = clock.see(msg.t, wall)
        if excess is None:  # off its publisher's clock: arrival times (rtdecode.sources.clock)
            msg.clock_rejected = True
            excess = 0.0
            local = None
        else:
            local = clock.local(msg.t)
        if msg.topic == "frame" and not msg.acquired:
            msg.acquired = received - excess
            msg.age_margin = clock.creep()
        msg.local_t = wall if local is None else local
        return msg.local_t

    def _poll_flips(self) -> None:
        """Read the TTL edges queued, pair them with the stim messages, and enter the stims resolved
        into the stimulus log at their flip times."""
        self.flips.poll()
        for t, (trial, frame, image), _ in self.flips.aligner.resolve(time.time()):
            self.stim.add(t, trial, frame, image)


__all__ = ["FLIP_POLL_MS", "LiveResult", "LiveSession", "StopOnSignals", "limit_blas_threads"]  # the last three re-exported
