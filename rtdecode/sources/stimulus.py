"""Stimulus side: what is on the screen, published and aligned to neural time.

`StimulusSender` is called by the stimulus program (PsychoPy, or Bonsai through its Python node)
right after each flip; it publishes an rtframe `stim` message: `frame` (stimulus frame index),
`trial`, `t` (the flip time on the sender's clock, e.g. PsychoPy's `win.flip()` return value mapped
to `time.time()`), and optionally the image shown as payload.

`align_stimulus_to_bins(flip_times, frames, bin_times)` answers, for each neural time bin, which
stimulus frame was on the screen: the last flip at or before the bin time (-1 before the first flip
or after `end_time`).
"""

from __future__ import annotations

import logging
import time

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.sources.exposure import bound
from rtdecode.errors import StageError

log = logging.getLogger(__name__)


class StimulusSender:
    """A PUB (XPUB) socket sending one `stim` message per flip.

        sender = StimulusSender("tcp://*:5570")
        ...
        t = win.flip()
        sender.flip(frame=k, trial=trial, image=frame_uint8)   # image optional
    """

    def __init__(self, endpoint: str = "tcp://127.0.0.1:*", wait_subscriber_s: float = 0.0,
                 context: zmq.Context | None = None, hwm: int = 1000):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.XPUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)
        self.sock.setsockopt(zmq.LINGER, 1000)
        self.sock.bind(endpoint)
        self.endpoint = bound(self.sock, "the stimulus sender")
        self.seq = wire.Sequencer()
        self.sent = 0
        if wait_subscriber_s > 0:
            self.wait_subscriber(wait_subscriber_s)

    def wait_subscriber(self, timeout_s: float) -> bool:
        """Block until a subscriber joins (True) or `timeout_s` passes (False)."""
        if not self.sock.poll(int(timeout_s * 1000)):
            log.warning("stimulus sender: no subscriber on %s within %.1f s", self.endpoint, timeout_s)
            return False
        self.sock.recv()
        time.sleep(0.05)
        return True

    def flip(self, frame: int, trial: int, image: np.ndarray | None = None, t: float | None = None,
             **fields) -> int:
        """Publish one flip; returns its seq. `t` defaults to time.time() now."""
        if not isinstance(frame, (int, np.integer)) or isinstance(frame, bool) or frame < 0:
            raise StageError(f"stimulus frame index must be a non-negative integer, got {frame!r}")
        if not isinstance(trial, (int, np.integer)) or isinstance(trial, bool):
            raise StageError(f"trial must be an integer, got {trial!r}")
        seq = self.seq()
        self.sock.send_multipart(wire.encode("stim", seq, time.time() if t is None else float(t), image,
                                             frame=int(frame), trial=int(trial), **fields))
        self.sent += 1
        return seq

    def end(self) -> None:
        """Tell receivers the stimulus program is done (`stats` with end true)."""
        self.sock.send_multipart(wire.encode("stats", self.seq(), time.time(), None, end=True, frames=self.sent))

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def align_stimulus_to_bins(flip_times, frames, bin_times, end_time: float | None = None) -> np.ndarray:
    """For each bin time, the stimulus frame on screen (the last flip at or before it), else -1.

    flip_times: non-decreasing flip times (s); frames: the frame index shown at each flip;
    bin_times: neural bin times on the same clock; end_time: when the last frame left the screen
    (bins at or after it get -1; default: the last frame stays on).
    """
    ft = np.asarray(flip_times, dtype=np.float64)
    fr = np.asarray(frames)
    bt = np.asarray(bin_times, dtype=np.float64)
    if ft.ndim != 1 or fr.shape != ft.shape:
        raise StageError(f"flip_times {ft.shape} and frames {fr.shape} must be 1-D of equal length")
    if not np.all(np.isfinite(ft)) or not np.all(np.isfinite(bt)):
        raise StageError("flip and bin times must be finite")
    if ft.size > 1 and np.any(np.diff(ft) < 0):
        raise StageError("flip_times must be non-decreasing (sort them, or check the stimulus clock)")
    out = np.full(bt.shape, -1, dtype=np.int64)
    if ft.size == 0:
        return out
    k = np.searchsorted(ft, bt, side="right") - 1
    on = k >= 0
    if end_time is not None:
        on &= bt < end_time
    out[on] = fr[k[on]]
    return out
