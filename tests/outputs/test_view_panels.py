"""The viewer's panels, offscreen: titles drawn (their text, and ink where they stand), the evaluation
region outlined, and a clean exit after a run longer than the 6 s that used to abort it."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from rtdecode.outputs.publish import Publisher  # noqa: E402
from rtdecode.sources import wire  # noqa: E402


def _mask():
    m = np.zeros((36, 64), bool)
    m[9:27, 17:47] = True
    return m


def test_panels_are_titled_and_the_titles_are_drawn(tmp_path):
    import pyqtgraph as pg

    from rtdecode.outputs.view import PANELS, BoolRefGuard, Viewer, ViewState

    app = pg.mkQApp("test")
    guard = BoolRefGuard()
    v = Viewer(["tcp://127.0.0.1:1"], mask=_mask())
    v.win.resize(1500, 640)
    v.win.show()
    st = ViewState(_mask())
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (36, 64)).astype(np.float32)
    st.take(wire.decode(wire.encode("stim", 0, 0.0, img.astype(np.uint8), trial=0, frame=0)))
    st.take(wire.decode(wire.encode("decoded", 0, 0.0, img, trial=0, frame=0)))
    st.take(wire.decode(wire.encode("frame", 1, 0.0, rng.integers(0, 4000, (64, 64)).astype(np.uint16),
                                    frameNumberAcq=1, channel=1, plane=1)))
    st.take(wire.decode(wire.encode("activity", 0, 0.0, rng.exponential(1, 300).astype(np.float32))))
    v.update(st, fresh=True)
    for _ in range(5):
        app.processEvents()
    titles = v.titles()
    assert list(titles) == list(PANELS)
    assert titles["reconstruction"].startswith("reconstruction") and "evaluation region" in titles["reconstruction"]
    assert titles["stimulus"] == "stimulus" and titles["raw frame with ROIs"] == "raw frame with ROIs"
    assert titles["activity"].startswith("activity")
    shot = v.win.grab()
    path = tmp_path / "panels.png"
    shot.save(str(path))
    from PIL import Image

    pix = np.asarray(Image.open(path).convert("L"), float)
    ratio = pix.shape[1] / v.win.width()  # device pixels per widget pixel
    for name, panel in v.panels.items():
        r = v.win.mapFromScene(panel.titleLabel.sceneBoundingRect()).boundingRect()
        y0, y1 = int(r.top() * ratio), int((r.bottom() + 1) * ratio)
        x0, x1 = int(r.left() * ratio), int((r.right() + 1) * ratio)
        box = pix[max(y0, 0):y1, max(x0, 0):x1]
        assert box.size > 0, name
        # title text: grey glyphs on the black background, a few per cent of the box
        assert (box > 80).mean() > 0.01, (name, (box > 80).mean())
    v.win.close()
    guard.check()


def test_mask_outline_and_masked_rolling_corr():
    from rtdecode.outputs.view import ViewState, mask_outline

    assert mask_outline(_mask()) == [(17.0, 9.0), (47.0, 9.0), (47.0, 27.0), (17.0, 27.0), (17.0, 9.0)]
    assert mask_outline(np.zeros((3, 3), bool)) == []
    st = ViewState(_mask())
    rng = np.random.default_rng(1)
    for k in range(20):
        stim = rng.uniform(0, 255, (36, 64)).astype(np.uint8)
        rec = stim.astype(np.float32)
        rec[~_mask()] = rng.uniform(0, 255, (~_mask()).sum())  # wrong outside the region only
        st.take(wire.decode(wire.encode("stim", 2 * k, 0.0, stim, trial=1, frame=k)))
        st.take(wire.decode(wire.encode("decoded", 2 * k + 1, 0.0, rec, trial=1, frame=k)))
    assert st.rolling_corr() > 0.999


def test_viewer_exits_cleanly_after_a_long_run(tmp_path):
    """Runs of 6 s or more used to abort at exit ("Fatal Python error: bool_dealloc", exit 134)."""
    pub = Publisher()
    stop = threading.Event()

    def stream():
        k = 0
        rng = np.random.default_rng(0)
        while not stop.is_set():
            pub.send("decoded", rng.uniform(0, 255, (36, 64)).astype(np.float32), trial=0, frame=k)
            pub.send("activity", rng.exponential(1, 100).astype(np.float32), trial=0, frame=k)
            k += 1
            time.sleep(0.02)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    np.save(tmp_path / "mask.npy", _mask())
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    try:
        proc = subprocess.run([sys.executable, "-m", "rtdecode", "view", pub.endpoint, "--seconds", "8",
                               "--mask", str(tmp_path / "mask.npy"), "--screenshot", str(tmp_path / "v.png")],
                              env=env, capture_output=True, text=True, timeout=120)
    finally:
        stop.set()
        th.join()
        pub.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "bool_dealloc" not in proc.stderr and (tmp_path / "v.png").is_file()
