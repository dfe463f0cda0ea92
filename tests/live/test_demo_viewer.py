"""The viewer on the virtual rig: the demo runs it offscreen and it saves a screenshot."""

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")


def test_demo_viewer_screenshot(tmp_path):
    from PIL import Image

    from rtdecode.live.demo import run_demo

    png = tmp_path / "viewer.png"
    s = run_demo(tmp_path / "demo", seconds=6, n_neurons=100, n_train=3, seed=2, speed=1.0,
                 frame_shape=(256, 256), progress=False, screenshot=png)
    assert s["frames"] == 180
    img = np.asarray(Image.open(png).convert("L"), float)
    # Reconstruction, stimulus and raw frame drawn: an empty viewer is black but for its text and
    # axes (0.5% of pixels brighter than 60 measured), the virtual rig's fills ~30% of the window.
    assert img.shape[1] > 500 and (img > 60).mean() > 0.1
