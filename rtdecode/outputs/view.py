"""`rtdecode view ADDRESS [ADDRESS ...]`: the rig viewer (pyqtgraph), its own process.

It only subscribes, so it can never block the pipeline; a slow viewer loses old frames (the
publishers' queues are bounded and it always shows the newest), and several viewers can watch one
rig. Connect it to rtdecode's publisher (decoded, activity, stats, trigger) and, when there is one,
to the stimulus stream (stim, with the frame as payload) to see both side by side with a rolling
pixel_corr. `--screenshot PNG --seconds S` renders offscreen and exits.
"""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.errors import WireError
from rtdecode.metrics import pearson

RASTER_FRAMES = 300
RASTER_NEURONS = 200
ROLLING_FRAMES = 90


class ViewState:
    """What the viewer has seen; kept apart from Qt so it can be tested headless."""

    def __init__(self):
        self.decoded: wire.Message | None = None
        self.stimuli: dict[tuple[int, int], np.ndarray] = {}
        self.stim_order: deque = deque(maxlen=600)
        self.latest_stim: np.ndarray | None = None
        self.pairs: deque = deque(maxlen=ROLLING_FRAMES)
        self.raster = np.zeros((RASTER_FRAMES, RASTER_NEURONS), np.float32)
        self.stats: dict = {}
        self.triggers = 0
        self.last_trigger = -np.inf
        self.shown = 0
        self.rejected = 0
        self.raw: np.ndarray | None = None  # the newest acquisition frame (two-photon), if subscribed

    def take(self, msg: wire.Message) -> None:
        if msg.topic == "decoded":
            self.decoded = msg
            key = (msg.header.get("trial"), msg.header.get("frame"))
            if key in self.stimuli:
                self.pairs.append((np.asarray(msg.array, np.float32).copy(), self.stimuli[key]))
        elif msg.topic == "stim" and msg.array is not None and msg.array.ndim == 2:
            key = (msg.header["trial"], msg.header["frame"])
            self.latest_stim = np.asarray(msg.array, np.float32)
            if len(self.stim_order) == self.stim_order.maxlen:
                self.stimuli.pop(self.stim_order[0], None)
            self.stim_order.append(key)
            self.stimuli[key] = self.latest_stim
        elif msg.topic == "frame" and msg.array is not None and msg.array.ndim == 2:
            self.raw = msg.array
        elif msg.topic == "activity":
            a = np.asarray(msg.array, np.float32).ravel()[:RASTER_NEURONS]
            self.raster = np.roll(self.raster, -1, axis=0)
            self.raster[-1, : a.size] = a
        elif msg.topic == "stats":
            self.stats = msg.header
        elif msg.topic == "trigger":
            self.triggers += 1
            self.last_trigger = time.monotonic()

    def rolling_corr(self) -> float:
        if len(self.pairs) < 10:
            return float("nan")
        rec = np.stack([p[0] for p in self.pairs])
        stim = np.stack([p[1] for p in self.pairs])
        return pearson(rec, stim)


def roi_centres(folder) -> np.ndarray:
    """(n, 2) y, x centre of each ROI of a suite2p folder (lam-weighted), for outlines on the raw frame."""
    from rtdecode.extract.rois import load_suite2p

    rois = load_suite2p(folder)
    fp = rois.footprints.tocsr()
    w = rois.frame_shape[1]
    ys = np.asarray(fp @ (np.arange(fp.shape[1]) // w).astype(np.float64)).ravel()
    xs = np.asarray(fp @ (np.arange(fp.shape[1]) % w).astype(np.float64)).ravel()
    return np.stack([ys, xs], 1)


def run_viewer(addresses: list[str] | str, seconds: float | None = None, screenshot: str | None = None,
               rois: str | None = None) -> int:
    """Show the streams at `addresses`; return the number of decoded frames shown. With `rois` (a
    suite2p folder) and an acquisition address among `addresses`, the raw two-photon frame is shown
    with a ring at every ROI."""
    import os

    if isinstance(addresses, str):
        addresses = [addresses]
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    app = pg.mkQApp("rtdecode view")
    win = pg.GraphicsLayoutWidget(title=f"rtdecode — {' '.join(addresses)}")
    win.resize(1500, 600)
    title = win.addLabel("waiting for frames…", colspan=3)
    win.nextRow()
    views, images = [], []
    for name in ("reconstruction", "stimulus", "two-photon"):
        v = win.addViewBox(lockAspect=True, invertY=True, name=name)
        img = pg.ImageItem(np.zeros((64, 36), np.float32), levels=(0, 255))
        v.addItem(img)
        views.append(v)
        images.append(img)
    if rois is not None:
        c = roi_centres(rois)
        views[2].addItem(pg.ScatterPlotItem(x=c[:, 1], y=c[:, 0], size=9, pen=pg.mkPen("y", width=1),
                                            brush=None, pxMode=True))
    win.nextRow()
    raster_plot = win.addPlot(title="activity (neurons x last 10 s)", colspan=3)
    raster = pg.ImageItem(np.zeros((RASTER_FRAMES, RASTER_NEURONS), np.float32))
    raster_plot.addItem(raster)
    win.show()

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in (b"decoded", b"stim", b"activity", b"stats", b"trigger", b"frame"):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    for a in addresses:
        sock.connect(a)
    state = ViewState()
    t0 = time.monotonic()

    def poll():
        fresh = False
        while sock.poll(0):  # drain everything queued; draw only the newest
            try:
                msg = wire.decode(sock.recv_multipart())
            except WireError:
                state.rejected += 1
                continue
            fresh |= msg.topic == "decoded"
            state.take(msg)
        if fresh:
            images[0].setImage(np.asarray(state.decoded.array, np.float32).T, levels=(0, 255))
            state.shown += 1
        if state.latest_stim is not None:
            images[1].setImage(state.latest_stim.T, levels=(0, 255))
        if state.raw is not None:
            raw = np.asarray(state.raw, np.float32)
            images[2].setImage(raw.T, levels=(float(np.percentile(raw, 1)), float(np.percentile(raw, 99.5))))
        # Deconvolved activity is heavy-tailed: scale to the 99th percentile so most events show.
        raster.setImage(state.raster, levels=(0.0, max(float(np.percentile(state.raster, 99)), 1e-6)))
        st = state.stats
        lat = st.get("latency_ms", {})
        flash = "  ● TRIGGER" if time.monotonic() - state.last_trigger < 0.3 else ""
        title.setText(
            f"frames {st.get('frames', 0)}  shown {state.shown}  latency p50 {lat.get('p50', '–')} ms "
            f"p99 {lat.get('p99', '–')} ms  dropped {st.get('dropped', 0)}  rejected {st.get('rejected', 0)}  "
            f"rolling pixel_corr {state.rolling_corr():.2f}  triggers {state.triggers}{flash}")
        if seconds is not None and time.monotonic() - t0 >= seconds:
            if screenshot:
                win.grab().save(screenshot)
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(poll)
    timer.start(15)
    app.exec()
    sock.close()
    return state.shown
