"""`rtdecode view ADDRESS [ADDRESS ...]`: the rig viewer (pyqtgraph), its own process.

It only subscribes, so it can never block the pipeline; a slow viewer loses old frames (the
publishers' queues are bounded and it always shows the newest), and several viewers can watch one
rig. Connect it to rtdecode's publisher (decoded, activity, stats, trigger) and, when there is one,
to the stimulus stream (stim, with the frame as payload) to see both side by side with a rolling
pixel_corr. `--screenshot PNG --seconds S` renders offscreen and exits.

Panels, each titled: reconstruction, stimulus, uncertainty (the per-pixel spread of the model's fold
ensemble, topic 'uncertainty', published by rtdecode for image-prior models: brighter = less certain,
scaled to its recent maximum, whose value and mean the status line gives; empty for models without
one), raw frame with ROIs (the acquisition stream, when subscribed), activity (raster). `--mask NPY` (a bool image of the decoded frame's shape, e.g. a
dataset's meta/evaluation_mask.npy) draws the evaluation region's outline on the reconstruction and
the stimulus, and the rolling pixel_corr is computed inside it, as `metrics.score` does.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from collections import deque

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.errors import WireError
from rtdecode.metrics import pearson

log = logging.getLogger(__name__)

PANELS = ("reconstruction", "stimulus", "uncertainty", "raw frame with ROIs", "activity")
IMAGE_PANELS = PANELS[:4]
RASTER_FRAMES = 300
RASTER_NEURONS = 200
ROLLING_FRAMES = 90


class ViewState:
    """What the viewer has seen; kept apart from Qt so it can be tested headless."""

    def __init__(self, mask: np.ndarray | None = None):
        self.mask = None if mask is None else np.asarray(mask, bool)
        self.decoded: wire.Message | None = None
        self.uncertainty: wire.Message | None = None  # the newest 'uncertainty' frame, (H, W) 0-255 scale
        self.spread_top = 0.0  # the uncertainty panel's white level: a decaying maximum of its 99th percentile
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
        elif msg.topic == "uncertainty" and msg.array is not None and msg.array.ndim == 2:
            self.uncertainty = msg
            top = float(np.percentile(msg.array, 99))
            self.spread_top = max(0.98 * self.spread_top, top) if np.isfinite(top) else self.spread_top
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
        if self.mask is not None and self.mask.shape == rec.shape[1:]:
            return pearson(rec[:, self.mask], stim[:, self.mask])
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


def mask_outline(mask: np.ndarray) -> list[tuple[float, float]]:
    """The evaluation region's outline as (x, y) points in image pixels: the boundary of its bounding
    box, closed (the virtual rig's region is a rectangle; any other mask shows its bounding box)."""
    ys, xs = np.nonzero(np.asarray(mask, bool))
    if ys.size == 0:
        return []
    x0, x1, y0, y1 = float(xs.min()), float(xs.max() + 1), float(ys.min()), float(ys.max() + 1)
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]


def _signal_emit_drops_bool_refs() -> bool:
    """True where the Qt binding's Signal.emit loses a reference to the bool it returns (PySide6
    6.12.0, measured: -1 per emit), which makes Python abort once True's count reaches zero."""
    from pyqtgraph.Qt import QtCore

    class _Probe(QtCore.QObject):
        sig = QtCore.Signal()

    o = _Probe()
    before = sys.getrefcount(True)
    for _ in range(50):
        o.sig.emit()
    return before - sys.getrefcount(True) >= 40


class BoolRefGuard:
    """Keeps True's and False's reference counts from falling below their level at start where the Qt
    binding drops them (see `_signal_emit_drops_bool_refs`): pyqtgraph emits a signal on every image
    update, so without this the viewer aborts with "Fatal Python error: bool_dealloc" after a few
    seconds (at exit) or a few minutes (while running). pyproject.toml also excludes PySide6 6.12.0."""

    CUSHION = 100_000

    def __init__(self):
        self.active = _signal_emit_drops_bool_refs()
        self.floor = {True: sys.getrefcount(True), False: sys.getrefcount(False)}
        if self.active:
            log.warning("this Qt binding loses references to True/False on every signal (PySide6 6.12.0); "
                        "compensating. Install another version: pip install 'PySide6-Essentials!=6.12.0'")
            self._add(True, self.CUSHION)
            self._add(False, self.CUSHION)

    @staticmethod
    def _add(obj: bool, n: int) -> None:
        ref = ctypes.py_object(obj)
        for _ in range(n):
            ctypes.pythonapi.Py_IncRef(ref)

    def check(self) -> None:
        if not self.active:
            return
        for b in (True, False):
            lost = self.floor[b] + self.CUSHION - sys.getrefcount(b)
            if lost > 0:
                self._add(b, lost)


class Viewer:
    """The window: five titled panels (PANELS) and a status line. `update(state)` draws what
    `state` holds; `panels[name]` is the panel's pyqtgraph PlotItem (its title: `.titleLabel`)."""

    def __init__(self, addresses: list[str], rois: str | None = None, mask: np.ndarray | None = None):
        import pyqtgraph as pg

        self.win = pg.GraphicsLayoutWidget(title=f"rtdecode — {' '.join(addresses)}")
        self.win.resize(1800, 640)
        self.status = self.win.addLabel("waiting for frames…", colspan=len(IMAGE_PANELS))
        self.win.nextRow()
        self.panels, self.images = {}, {}
        for name in IMAGE_PANELS:
            p = self.win.addPlot(title=name)
            p.hideAxis("left")
            p.hideAxis("bottom")
            p.setAspectLocked(True)
            p.invertY(True)
            p.setMenuEnabled(False)
            img = pg.ImageItem(np.zeros((64, 36), np.float32), levels=(0, 255))
            p.addItem(img)
            self.panels[name], self.images[name] = p, img
        if rois is not None:
            c = roi_centres(rois)
            self.panels["raw frame with ROIs"].addItem(pg.ScatterPlotItem(
                x=c[:, 1], y=c[:, 0], size=9, pen=pg.mkPen("y", width=1), brush=None, pxMode=True))
        self.outline = mask_outline(mask) if mask is not None else []
        if self.outline:
            xs, ys = zip(*self.outline)
            for name in ("reconstruction", "stimulus"):
                self.panels[name].addItem(pg.PlotDataItem(list(xs), list(ys), pen=pg.mkPen((255, 80, 80), width=2,
                                                                                         style=pg.QtCore.Qt.DashLine)))
            self.panels["reconstruction"].setTitle("reconstruction (dashed: evaluation region)")
        self.win.nextRow()
        self.panels["activity"] = self.win.addPlot(title="activity (neurons x last 10 s)", colspan=len(IMAGE_PANELS))
        self.raster = pg.ImageItem(np.zeros((RASTER_FRAMES, RASTER_NEURONS), np.float32))
        self.panels["activity"].addItem(self.raster)

    def titles(self) -> dict[str, str]:
        return {name: p.titleLabel.text for name, p in self.panels.items()}

    def update(self, state: ViewState, fresh: bool) -> None:
        if fresh and state.decoded is not None:
            self.images["reconstruction"].setImage(np.asarray(state.decoded.array, np.float32).T, levels=(0, 255))
            state.shown += 1
        if state.latest_stim is not None:
            self.images["stimulus"].setImage(state.latest_stim.T, levels=(0, 255))
        if fresh and state.uncertainty is not None:
            self.images["uncertainty"].setImage(np.asarray(state.uncertainty.array, np.float32).T,
                                                levels=(0.0, max(state.spread_top, 1e-3)))
        if state.raw is not None:
            raw = np.asarray(state.raw, np.float32)
            self.images["raw frame with ROIs"].setImage(
                raw.T, levels=(float(np.percentile(raw, 1)), float(np.percentile(raw, 99.5))))
        # Deconvolved activity is heavy-tailed: scale to the 99th percentile so most events show.
        self.raster.setImage(state.raster, levels=(0.0, max(float(np.percentile(state.raster, 99)), 1e-6)))
        st = state.stats
        lat = st.get("latency_ms", {})
        flash = "  ● TRIGGER" if time.monotonic() - state.last_trigger < 0.3 else ""
        self.status.setText(
            f"frames {st.get('frames', 0)}  shown {state.shown}  latency p50 {lat.get('p50', '–')} ms "
            f"p99 {lat.get('p99', '–')} ms  dropped {st.get('dropped', 0)}  rejected {st.get('rejected', 0)}  "
            f"rolling pixel_corr {state.rolling_corr():.2f}  triggers {state.triggers}{flash}"
            + (f"  spread mean {float(np.mean(state.uncertainty.array)):.1f} (white {state.spread_top:.1f})"
               if state.uncertainty is not None else ""))


def run_viewer(addresses: list[str] | str, seconds: float | None = None, screenshot: str | None = None,
               rois: str | None = None, mask: str | np.ndarray | None = None) -> int:
    """Show the streams at `addresses`; return the number of decoded frames shown. With `rois` (a
    suite2p folder) and an acquisition address among `addresses`, the raw two-photon frame is shown
    with a ring at every ROI; `mask` (a .npy path or a bool array) is the evaluation region."""
    import os

    if isinstance(addresses, str):
        addresses = [addresses]
    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if isinstance(mask, (str, os.PathLike)):
        from rtdecode.errors import ConfigError

        try:
            mask = np.load(mask, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--mask {mask}: not a readable .npy image ({exc})") from None
        if mask.ndim != 2:
            raise ConfigError(f"--mask: expected a 2-D image of the decoded frame's shape, got shape {mask.shape}")
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    app = pg.mkQApp("rtdecode view")
    guard = BoolRefGuard()
    viewer = Viewer(addresses, rois, mask)
    viewer.win.show()

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 100)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in (b"decoded", b"uncertainty", b"stim", b"activity", b"stats", b"trigger", b"frame"):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    for a in addresses:
        sock.connect(a)
    state = ViewState(mask)
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
        viewer.update(state, fresh)
        guard.check()
        if seconds is not None and time.monotonic() - t0 >= seconds:
            timer.stop()
            if screenshot:
                viewer.win.grab().save(str(screenshot))
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(poll)
    timer.start(15)
    app.exec()
    timer.stop()
    sock.close()
    viewer.win.close()
    guard.check()
    return state.shown
