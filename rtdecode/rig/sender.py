"""The virtual rig's sender: publishes what a real rig would, over ZeroMQ, in `rtframe` v1.

For every tick of the 30 Hz clock it sends a `stim` message (which movie frame is on screen, with the
frame itself as a uint8 36x64 payload) and then a `frame` message (the two-photon frame acquired
during it, uint16, with ScanImage's fields). At the end a `stats` message with `"end": true`.
The socket is an XPUB so the sender can wait for the first subscriber instead of losing the start.
With `stim_endpoint` set, `stim` messages go out on a second socket of their own (each with its own
`seq`), as from a separate stimulus PC; the frames socket still carries the `frame`s and the end.

`prerender` > 0 renders that many two-photon frames before streaming and then streams them in a loop
(frame counters keep counting), so that rendering does not compete for the CPU with the pipeline
being measured, and a session can run for as long as `max_frames` asks (soak tests).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.sources.exposure import bound
from rtdecode.rig import VirtualRig
from rtdecode.stimuli.movies import FPS

log = logging.getLogger(__name__)


@dataclass
class SenderConfig:
    n_neurons: int = 1000
    seed: int = 0
    n_train: int = 20
    n_oracle: int = 4
    trials: tuple[int, ...] = ()
    speed: float = 1.0  # 1 = real time (30 Hz); 2 = twice as fast; 0 = as fast as possible
    max_frames: int | None = None  # stop after this many frames (None: every frame of every trial)
    frame_shape: tuple[int, int] = (512, 512)
    endpoint: str = "tcp://127.0.0.1:*"
    wait_subscriber_s: float = 10.0
    prerender: int = 0  # > 0: render this many frames up front, then stream them in a loop
    hwm: int = 1000  # send high-water mark (messages); a full queue drops, seen as seq gaps downstream
    send_end: bool = True  # False: vanish without the end message (a crashed or unplugged source)
    stim_endpoint: str | None = None  # stimulus on its own socket (the stimulus PC); None: on the frames socket
    rig: str = "realistic"  # population profile (rtdecode.rig.population.PROFILES)


def run_sender(cfg: SenderConfig, ready=None) -> dict:
    """Stream the trials; `ready` (a multiprocessing queue) receives the bound endpoint.

    Returns counts of what was sent.
    """
    from rtdecode.rig.twophoton import Microscope

    rig = VirtualRig(cfg.n_neurons, cfg.seed, cfg.n_train, cfg.n_oracle, rig=cfg.rig)
    scope = Microscope(cfg.n_neurons, seed=cfg.seed, frame_shape=cfg.frame_shape, fps=FPS)
    trials = [rig.trial(i) for i in (cfg.trials or rig.trials("oracle"))]
    cache = _prerender(trials, scope, cfg.prerender) if cfg.prerender > 0 else None
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, cfg.hwm)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.bind(cfg.endpoint)
    endpoint = bound(sock, "the virtual rig's sender")
    stim_sock, stim_endpoint = sock, None
    if cfg.stim_endpoint is not None:
        stim_sock = ctx.socket(zmq.XPUB)
        stim_sock.setsockopt(zmq.SNDHWM, cfg.hwm)
        stim_sock.setsockopt(zmq.LINGER, 2000)
        stim_sock.bind(cfg.stim_endpoint)
        stim_endpoint = bound(stim_sock, "the virtual rig's stimulus sender")
    if ready is not None:
        ready.put(endpoint)
    log.info("virtual rig: frames on %s%s; waiting up to %g s for a subscriber", endpoint,
             f", stimulus on {stim_endpoint}" if stim_endpoint else "", cfg.wait_subscriber_s)
    deadline = time.monotonic() + cfg.wait_subscriber_s
    if not sock.poll(int(cfg.wait_subscriber_s * 1000)):
        sock.close()
        if stim_sock is not sock:
            stim_sock.close()
        raise TimeoutError(f"no subscriber connected to {endpoint} within {cfg.wait_subscriber_s} s")
    sock.recv()  # the subscription message
    if stim_sock is not sock:  # the same subscriber usually connects to both at once
        if stim_sock.poll(int(max(0.0, min(2.0, deadline - time.monotonic())) * 1000)):
            stim_sock.recv()
        else:
            log.warning("no subscriber on the stimulus socket %s yet; streaming anyway", stim_endpoint)
    time.sleep(0.05)  # a second subscriber may still be joining
    seq = wire.Sequencer()
    stim_seq = seq if stim_sock is sock else wire.Sequencer()
    period = 0.0 if cfg.speed <= 0 else 1.0 / (FPS * cfg.speed)
    t0 = time.perf_counter()
    frames = 0

    def send(trial: int, k: int, stim8: np.ndarray, img: np.ndarray) -> None:
        nonlocal frames
        if period:
            delay = t0 + frames * period - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        now = time.time()
        stim_sock.send_multipart(wire.encode("stim", stim_seq(), now, stim8, frame=k, trial=trial))
        # The frame goes out without a copy (its array is not changed afterwards: prerendered, or
        # rendered anew for each frame), as a driver that hands ScanImage's buffer to ZeroMQ would.
        sock.send_multipart(wire.encode("frame", seq(), now, img, copy=False, frameNumberAcq=frames + 1,
                                        frameTimestamp=frames / FPS, channel=1, plane=1), copy=False)
        frames += 1

    if cache is not None:
        limit = cfg.max_frames if cfg.max_frames is not None else len(cache)
        while frames < limit:
            trial, k, stim8, img = cache[frames % len(cache)]
            send(trial, k, stim8, img)
    else:
        limit = cfg.max_frames if cfg.max_frames is not None else sum(tr.movie.shape[0] for tr in trials)
        for tr in trials:
            stim8 = np.clip(tr.movie + 0.5, 0, 255).astype(np.uint8)
            for k in range(min(tr.movie.shape[0], limit - frames)):
                # rendering happens before the tick, like acquisition
                send(tr.index, k, stim8[k], scope.render(tr.spikes[k]))
    if cfg.send_end:
        sock.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True, frames=frames))
    sock.close()
    if stim_sock is not sock:
        stim_sock.close()
    return {"frames": frames, "trials": len(trials), "endpoint": endpoint, "stim_endpoint": stim_endpoint}


def _prerender(trials, scope, n: int) -> list:
    """[(trial, stimulus frame, stimulus uint8, two-photon frame)] for the first `n` frames of `trials`."""
    out = []
    for tr in trials:
        stim8 = np.clip(tr.movie + 0.5, 0, 255).astype(np.uint8)
        for k in range(tr.movie.shape[0]):
            if len(out) >= n:
                return out
            out.append((tr.index, k, stim8[k], scope.render(tr.spikes[k])))
    return out


def sender_process(cfg: SenderConfig, ready) -> None:
    """Entry point of a child process (multiprocessing 'spawn')."""
    logging.basicConfig(level=logging.WARNING)
    try:
        run_sender(cfg, ready)
    except Exception as exc:  # report to the parent instead of dying silently
        ready.put(f"error: {exc}")
        raise
