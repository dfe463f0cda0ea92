"""The viewer, offscreen, subscribed to a real publisher on loopback."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rtdecode.publish import Publisher

pytest.importorskip("pyqtgraph")


def test_viewer_shows_the_decoded_stream_and_saves_a_screenshot(tmp_path):
    pub = Publisher()
    stop = threading.Event()

    def stream():
        k = 0
        while not stop.is_set():
            img = np.zeros((36, 64), np.float32)
            img[:, : (k % 64)] = 255.0  # a bar that grows: visibly not a blank frame
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
    assert img.shape[0] > 100 and img.std() > 10  # something was drawn
