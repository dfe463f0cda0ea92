"""`rtdecode view ADDRESS`: a minimal live viewer (pyqtgraph) of a decoded stream.

It runs in its own process and only subscribes, so it can never block the pipeline; a slow viewer
loses old frames (the publisher's queue is bounded), and several viewers can watch one rig.
`--screenshot PNG --seconds S` renders offscreen and exits.
"""

from __future__ import annotations

import time

import numpy as np
import zmq

from rtdecode import wire
from rtdecode.errors import WireError


def run_viewer(address: str, seconds: float | None = None, screenshot: str | None = None) -> int:
    """Show decoded frames from `address`; return the number of frames shown."""
    import os

    if screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore

    app = pg.mkQApp("rtdecode view")
    win = pg.GraphicsLayoutWidget(title=f"rtdecode — {address}")
    win.resize(900, 360)
    view = win.addViewBox(lockAspect=True, invertY=True)
    image = pg.ImageItem(np.zeros((64, 36), np.float32), levels=(0, 255))
    view.addItem(image)
    win.nextRow()
    label = win.addLabel("waiting for frames…")
    win.show()

    sock = zmq.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.RCVHWM, 10)
    sock.setsockopt(zmq.LINGER, 0)
    for topic in (b"decoded", b"stats"):
        sock.setsockopt(zmq.SUBSCRIBE, topic)
    sock.connect(address)
    state = {"shown": 0, "t0": time.monotonic(), "stats": {}}

    def poll():
        latest = None
        while sock.poll(0):  # drain: show only the newest frame
            try:
                msg = wire.decode(sock.recv_multipart())
            except WireError:
                continue
            if msg.topic == "decoded":
                latest = msg
            else:
                state["stats"] = msg.header
        if latest is not None:
            image.setImage(np.asarray(latest.array, np.float32).T, levels=(0, 255))
            state["shown"] += 1
            lat = state["stats"].get("latency_ms", {})
            label.setText(f"trial {latest.header.get('trial')} frame {latest.header.get('frame')} — "
                          f"shown {state['shown']} — latency p50 {lat.get('p50', '?')} ms p99 {lat.get('p99', '?')} ms — "
                          f"dropped {state['stats'].get('dropped', 0)}")
        if seconds is not None and time.monotonic() - state["t0"] >= seconds:
            if screenshot:
                win.grab().save(screenshot)
            app.quit()

    timer = QtCore.QTimer()
    timer.timeout.connect(poll)
    timer.start(10)
    app.exec()
    sock.close()
    return state["shown"]
