"""The viewer, offscreen, subscribed to a real publisher on loopback."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rtdecode.outputs.publish import Publisher

pytest.importorskip("pyqtgraph")


def test_viewer_shows_the_decoded_stream_and_saves_a_screenshot(tmp_path):
    pub = Publisher()
    stop = threading.Event()

    def stream():
        k = 0
        while not stop.is_set():
            img = np.zeros((36, 64), np.float32)
            img[:, 32 + k % 2:] = 255.0  # the right half white (shifting by a pixel): never a blank frame
            pub.send("decoded", img, trial=0, frame=k)
            k += 1
            time.sleep(0.02)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    png = tmp_path / "view.png"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-m", "rtdecode", "view", pub.endpoint, "--seconds", "2",
                           "--screenshot", str(png)], env=env, capture_output=True, text=True, timeout=60)
    stop.set()
    th.join()
    pub.close()
    assert proc.returncode == 0, proc.stderr
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), float)
    # The decoded bar is drawn: white pixels (255 in the frame) cover part of the window; an empty
    # viewer is black with grey text and axes only.
    assert img.shape[0] > 100 and (img > 240).mean() > 0.01


def test_view_state_pairs_decoded_with_stimulus_and_counts_triggers():
    from rtdecode.sources import wire
    from rtdecode.outputs.view import ViewState

    st = ViewState()
    rng = np.random.default_rng(0)
    for k in range(20):
        img = rng.uniform(0, 255, (36, 64)).astype(np.uint8)
        st.take(wire.decode(wire.encode("stim", 2 * k, 0.0, img, trial=1, frame=k)))
        st.take(wire.decode(wire.encode("decoded", k, 0.0, img.astype(np.float32), trial=1, frame=k)))
    st.take(wire.decode(wire.encode("trigger", 0, 0.0, None, rule="x")))
    st.take(wire.decode(wire.encode("activity", 0, 0.0, np.ones(500, np.float32))))
    assert st.rolling_corr() > 0.999 and st.triggers == 1 and st.raster[-1].sum() == 200
