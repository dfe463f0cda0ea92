"""The warm start, live: a background refiner that runs the iterative inverse (rtdecode.decode.inverse)
started from the amortized frames, and publishes what it gets as a 'refined' stream beside 'decoded'.

The live loop never waits for it. Per decoded frame the session calls `LiveRefiner.on_frame` last (after
the decoded frame is published, the triggers fed, the activity and uncertainty sent), which only
- copies the frame's activity vector and the decoded frame into two short histories (a few kB),
- polls the refiner's result queue without blocking (a refined frame that came back is published as
  'refined', scored and returned for the recording), and
- hands the refiner a job when it is idle: the newest decoded frame's window (latest wins). A decoded
  frame the refiner could not take (busy with an earlier one) is counted as `skipped`; it is never
  queued, so nothing builds up and a slow refiner only refines fewer frames.

The refiner is a separate process (multiprocessing, spawn) whose priority is lowered (os.nice(NICE)),
with one torch thread. A job is the newest decoded frame's recent window: the activity of its target
frame and the `frames - 1` frames before it (N, frames), the decoded (amortized) frames of those same
targets (frames, H, W) as the inverse's start (the warm start), and the behaviour: the live session has
no behaviour stream today, so the refiner holds the encoder's training mean (zero after the encoder's
own normalisation) over the window. It runs `invert(encoders, activity, behaviour, init=decoded frames)`
for `iterations` (the model card's `warm_iterations`, or the rig file's `outputs.refined_iterations`)
with the model's population mask and inverse settings, as `rtdecode reconstruct --method warm` does
on a whole trial, and sends back the window's newest frame: the refinement of the decoded frame it was
handed. The session publishes it (topic 'refined', the wire format of 'decoded': the same fields for
the frame it refines, `frameNumberAcq` that frame's number, plus `latency_ms`, its own acquisition ->
published time, `refine_ms` and `iterations`) at the next frame after it came back (so its latency
includes up to one frame period of waiting), and records it in that row (the recording's extras
'refined', (H, W) float32, and 'refined_of', the frameNumberAcq it refines; NaN where none).

Failures never reach the session: an exception in a job is counted (`errors`) and the refiner goes on;
a refiner process that dies is counted (`crashes`; the frame it was refining `lost`) and restarted in
a thread (not on the live loop), at most `max_restarts` times, then disabled (`disabled` says why). A
fault on the live side (a bug here) is counted (`live_errors`) and disables it. `close()` stops the
process (a stop message, then terminate, then kill).

Stats (`stats()`, the session's stats under 'refined'): frames offered / published / skipped /
not_ready (the process starting, or the window not yet full) / lost, errors, crashes, restarts, the
acquired -> published latency histogram (rtdecode.latency), the inverse's time per frame, and the
live pixel_corr (rtdecode.metrics.LiveScore, full frame, as the session's `live_quality`) of the refined
frames and of the decoded frames of the same targets, per trial, with the gain (refined - decoded).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np

from rtdecode.errors import ConfigError
from rtdecode.latency import Histogram
from rtdecode.metrics import LiveScore

log = logging.getLogger(__name__)

NICE = 10  # the refiner's niceness increment: the live loop and the acquisition come first
DEFAULT_FRAMES = 16  # frames of the recent window the inverse runs on
MAX_RESTARTS = 3
CHECK_EVERY_S = 0.2  # how often the live side looks whether the process is alive
BEHAVIOUR = "encoder training mean (the live session has no behaviour stream)"
RECORD_EXTRAS = {"refined": "float32", "refined_of": "float64"}


def has_encoder(card) -> bool:
    """True when the model carries a trained encoder (the iterative inverse's model)."""
    enc = getattr(card, "encoder", None)
    return isinstance(enc, dict) and int(enc.get("models", 0) or 0) > 0


def record_extras(frame_shape) -> dict:
    """The recording's extras for the refined stream: {name: (shape, dtype)}."""
    return {"refined": (tuple(frame_shape), RECORD_EXTRAS["refined"]), "refined_of": ((), RECORD_EXTRAS["refined_of"])}


def check_refinable(card, model, key: str = "outputs.refined") -> None:
    """ConfigError (under `key`) unless the model (card: its ModelCard, None: no decoder) has an encoder."""
    if card is None:
        raise ConfigError(f"{key}: the rig file has no decoder (a calibration block): there is nothing to refine")
    if not has_encoder(card):
        raise ConfigError(f"{key}: the model {model} ('{card.method}') has no encoder, so there is no iterative "
                          "inverse to refine with; fit one with an encoder (rtdecode fit --method amortized with "
                          "encoder steps > 0) or set outputs.refined: false")


def make_refiner(model, card, iterations: int | None = None, frames: int = DEFAULT_FRAMES,
                 key: str = "outputs.refined", **options) -> "LiveRefiner":
    """A started LiveRefiner for the model at `model` (card: its ModelCard); ConfigError (under `key`)
    when the model has no encoder (check_refinable)."""
    check_refinable(card, model, key)
    return LiveRefiner(model, card, iterations=iterations, frames=frames, **options)


def _worker(model: str, iterations: int, jobs, results, debug: dict) -> None:
    """The refiner process: load the model's encoders, then invert each job's window."""
    try:
        os.nice(NICE)
    except OSError:  # pragma: no cover - nice never fails upwards, but never die for it
        pass
    import torch

    torch.set_num_threads(1)
    from dataclasses import asdict

    from rtdecode import decode
    from rtdecode.decode.inverse import InverseConfig, invert

    _, dec = decode.load(model)
    cfg = InverseConfig(**{**asdict(dec.inverse_cfg), "iterations": iterations, "record_every": 0})
    cfg.warmup = min(cfg.warmup, max(1, iterations // 2))  # as PipelineDecoder.reconstruct's warm mode
    beh = np.mean([e.beh_mean.numpy() for e in dec.encoders], 0).astype(np.float32)
    parent = os.getppid()
    results.put(("ready", None, os.getpid(), 0.0))
    done = 0
    while True:
        try:
            job = jobs.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent:  # the session is gone: never outlive it
                return
            continue
        if job is None:
            return
        jid, activity, init = job
        done += 1
        if debug.get("crash_on_job") == done:  # tests: a refiner that dies
            os._exit(3)
        t0 = time.perf_counter()
        try:
            if debug.get("raise_on_job") == done:
                raise RuntimeError("a test fault in the refiner")
            if debug.get("delay_s"):
                time.sleep(float(debug["delay_s"]))
            rec, _ = invert(dec.encoders, activity, np.repeat(beh[None], activity.shape[1], 0),
                            mask=dec.mask, init=init, cfg=cfg)
            results.put(("refined", jid, np.ascontiguousarray(rec[-1], np.float32), time.perf_counter() - t0))
        except Exception as exc:  # noqa: BLE001 -- counted on the live side; the refiner goes on
            results.put(("error", jid, f"{type(exc).__name__}: {exc}", time.perf_counter() - t0))


class LiveRefiner:
    """The live side of the background refiner (see the module doc). Built and started by `make_refiner`;
    the session calls `attach` once and `on_frame` per frame; `stats()`; `close()`.

    debug (tests only): {'delay_s': seconds each job sleeps, 'crash_on_job': k (the process exits on its
    k-th job), 'raise_on_job': k (its k-th job raises)}."""

    def __init__(self, model, card, iterations: int | None = None, frames: int = DEFAULT_FRAMES,
                 max_restarts: int = MAX_RESTARTS, debug: dict | None = None):
        self.model = str(Path(model).resolve())
        self.frame_shape = tuple(card.frame_shape)
        self.iterations = int(iterations or card.warm_iterations or 1)
        self.frames = int(frames)
        self.max_restarts = int(max_restarts)
        self.debug = dict(debug or {})
        self._mp = mp.get_context("spawn")
        self.pub = self.stim = None
        self.collect = False
        self.collected: dict = {}  # (trial, stim frame) -> refined (H, W), when collecting
        self._act: deque = deque(maxlen=self.frames)
        self._dec: deque = deque(maxlen=self.frames)
        self._link = None  # (process, jobs, results) once started
        self._ready = False
        self._in_flight = None  # (job id, meta, decoded frame) of the job the refiner holds
        self._jobs_sent = 0
        self._checked = 0.0
        self._restarting: threading.Thread | None = None
        self.offered = self.published = self.skipped = self.not_ready = self.lost = 0
        self.errors = self.crashes = self.restarts = self.live_errors = 0
        self.disabled: str | None = None
        self.latency = Histogram()  # acquisition -> refined frame published
        self.refine_time = Histogram()  # the inverse's time per job, in the refiner
        self.score = LiveScore()  # refined frames against their stimulus
        self.score_decoded = LiveScore()  # the decoded frames of the same targets
        self._link = self._spawn()

    # ---------------------------------------------------------------- process

    def _spawn(self):
        jobs, results = self._mp.Queue(), self._mp.Queue()
        proc = self._mp.Process(target=_worker, args=(self.model, self.iterations, jobs, results, self.debug),
                                daemon=True, name="rtdecode-refiner")
        proc.start()
        return proc, jobs, results

    def wait_ready(self, timeout: float = 120.0) -> bool:
        """Block until the refiner process has loaded the model (not for the live loop: tests, demo)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and not self._ready and self.disabled is None:
            self._poll(block_s=0.1)
        return self._ready

    def attach(self, publisher, stim, target_back: int, collect: bool = False) -> None:
        """Called by the session: where to publish, the stimulus log (for scoring), and how many steps the
        decoded frame's target lies behind the newest frame (its activity history is that much longer)."""
        self.pub, self.stim, self.collect = publisher, stim, collect
        self._act = deque(maxlen=self.frames + max(int(target_back), 0))

    # ---------------------------------------------------------------- the live side

    def on_frame(self, activity: np.ndarray | None, decoded: np.ndarray | None, meta: tuple | None) -> dict | None:
        """One frame of the live loop (after everything else): its activity vector, its decoded frame (None
        when it has none yet) and meta = (frameNumberAcq, target (trial, frame), target_t, target_local_t,
        acquired (perf_counter), clock_rejected). Never blocks. Returns the recording's extras for this
        row ({'refined', 'refined_of'}) when a refined frame was published, else None."""
        if self.disabled is not None:
            return None
        try:
            return self._on_frame(activity, decoded, meta)
        except Exception:  # noqa: BLE001 -- a bug here must never touch the live path: off, counted
            self.live_errors += 1
            log.exception("the refiner's live side failed; the refined stream is off for this session")
            self._disable("its live side failed")
            return None

    def _on_frame(self, activity, decoded, meta):
        if activity is not None:
            self._act.append(np.array(activity, np.float32))
        if decoded is not None:
            self._dec.append(np.array(decoded, np.float32))
        out = self._poll()
        if decoded is None or self.disabled is not None:
            return out
        self.offered += 1
        link = self._link
        full = len(self._dec) == self._dec.maxlen and len(self._act) == self._act.maxlen
        if link is None or not self._ready or not full:
            self.not_ready += 1
        elif self._in_flight is not None:
            self.skipped += 1  # the refiner is busy: this frame is not queued (latest wins)
        else:
            self._jobs_sent += 1
            jid = self._jobs_sent
            activity_window = np.stack(list(self._act)[:self.frames], 1)  # (N, frames): targets k-frames+1..k
            init = np.stack(self._dec)  # the decoded frames of the same targets
            link[1].put((jid, activity_window, init))  # never blocks: at most one job is ever queued
            self._in_flight = (jid, meta, self._dec[-1])
        return out

    def _poll(self, block_s: float = 0.0) -> dict | None:
        """Take what the refiner sent back (without blocking unless block_s); publish a refined frame."""
        link = self._link
        if link is None:
            return None
        out = None
        while True:
            try:
                kind, jid, payload, secs = link[2].get(timeout=block_s) if block_s else link[2].get_nowait()
            except queue.Empty:
                break
            except (EOFError, OSError, ValueError):  # the pipe broke: the process is going
                break
            block_s = 0.0
            if kind == "ready":
                self._ready = True
                log.info("refiner ready (pid %d): %d inverse iteration(s) on the last %d frames, niceness +%d",
                         payload, self.iterations, self.frames, NICE)
                continue
            if self._in_flight is None or jid != self._in_flight[0]:
                continue  # a result of a job from before a restart
            _, meta, decoded = self._in_flight
            self._in_flight = None
            self.refine_time.add(secs)
            if kind == "error":
                self.errors += 1
                if self.errors <= 3:
                    log.warning("the refiner failed on a frame (%d time(s)): %s; it goes on", self.errors, payload)
                continue
            out = self._publish(payload, meta, decoded, secs)
        now = time.monotonic()
        if now - self._checked >= CHECK_EVERY_S:
            self._checked = now
            if not link[0].is_alive():
                self._died(link)
        return out

    def _publish(self, frame: np.ndarray, meta: tuple, decoded: np.ndarray, secs: float) -> dict:
        number, target, target_t, target_local_t, acquired, clock_rejected = meta
        latency = time.perf_counter() - acquired if acquired and not clock_rejected else None
        fields = {"trial": target[0], "frame": target[1], "target_t": target_t, "target_local_t": target_local_t,
                  "frameNumberAcq": number, "refine_ms": round(secs * 1e3, 3), "iterations": self.iterations}
        if latency is not None:
            fields["latency_ms"] = round(latency * 1e3, 3)
        self.pub.send("refined", frame, t=time.time(), **fields)
        self.published += 1
        if latency is not None:
            self.latency.add(max(latency, 0.0))
        if target[0] >= 0:
            image = self.stim.images.get(tuple(target)) if self.stim is not None else None
            if image is not None:
                self.score.add(target[0], target[1], frame, image)
                self.score_decoded.add(target[0], target[1], decoded, image)
            if self.collect:
                self.collected[tuple(target)] = frame
        return {"refined": frame, "refined_of": float(number) if isinstance(number, (int, float)) else float("nan")}

    def _died(self, link) -> None:
        proc = link[0]
        self.crashes += 1
        if self._in_flight is not None:
            self.lost += 1
            self._in_flight = None
        self._link, self._ready = None, False
        _drop(link)
        if self.crashes > self.max_restarts:
            self._disable(f"the refiner process died {self.crashes} times (last exit code {proc.exitcode})")
            log.error("refined stream off: %s", self.disabled)
            return
        self.restarts += 1
        log.warning("the refiner process died (exit code %s); restarting it (%d of at most %d)", proc.exitcode,
                    self.restarts, self.max_restarts)

        def restart():
            link = self._spawn()
            if self.disabled is None:
                self._link = link
            else:
                _stop(link)

        self._restarting = threading.Thread(target=restart, daemon=True, name="rtdecode-refiner-restart")
        self._restarting.start()

    def _disable(self, reason: str) -> None:
        self.disabled = reason
        link, self._link = self._link, None
        if link is not None:
            _stop(link)

    def close(self) -> None:
        """Stop the refiner process (a stop message, then terminate, then kill); safe to call twice."""
        if self._restarting is not None:
            self._restarting.join(timeout=30)
        link, self._link = self._link, None
        if link is not None:
            _stop(link)

    # ---------------------------------------------------------------- stats

    def stats(self) -> dict:
        r, d = self.score.summary(), self.score_decoded.summary()
        per = {}
        for trial, rv in r["per_trial"].items():
            dv = d["per_trial"].get(trial)
            per[trial] = {"refined": rv, "decoded": dv,
                          "gain": None if rv is None or dv is None else round(rv - dv, 4)}
        gain = (None if r["pixel_corr"] is None or d["pixel_corr"] is None
                else round(r["pixel_corr"] - d["pixel_corr"], 4))
        return {"published": self.published, "offered": self.offered, "skipped": self.skipped,
                "not_ready": self.not_ready, "lost": self.lost, "errors": self.errors, "crashes": self.crashes,
                "restarts": self.restarts, "live_errors": self.live_errors, "disabled": self.disabled,
                "iterations": self.iterations, "frames": self.frames, "behaviour": BEHAVIOUR,
                "acquired_to_published_ms": self.latency.summary_ms(),
                "refine_ms": {k: v for k, v in self.refine_time.summary_ms().items() if k in ("p50", "p99", "max")},
                "quality": {"pixel_corr_refined": r["pixel_corr"], "pixel_corr_decoded": d["pixel_corr"],
                            "gain": gain, "frames": r["frames"], "trials": r["trials"],
                            "skip_frames": r["skip_frames"], "mask": r["mask"], "per_trial": per}}


def _drop(link) -> None:
    """Let go of a dead process's queues without waiting on them."""
    for q in link[1:]:
        q.cancel_join_thread()
        q.close()


def _stop(link, timeout: float = 5.0) -> None:
    proc, jobs, _ = link
    if proc.is_alive():
        try:
            jobs.put(None)
        except (OSError, ValueError):
            pass
        proc.join(timeout)
    if proc.is_alive():
        proc.terminate()
        proc.join(2.0)
    if proc.is_alive():
        proc.kill()
        proc.join(2.0)
    _drop(link)
