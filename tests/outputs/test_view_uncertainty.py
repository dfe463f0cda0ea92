"""The viewer's uncertainty panel, offscreen: beside the stimulus and the reconstruction, titled, it draws
the newest 'uncertainty' frame (scaled to its recent maximum) and stays empty without the stream."""

import os

import numpy as np
import pytest

pytest.importorskip("pyqtgraph")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from rtdecode.sources import wire  # noqa: E402


def _ink(v, name, path):
    """Share of bright pixels inside panel `name`'s image area of the window's screenshot."""
    from PIL import Image

    v.win.grab().save(str(path))
    pix = np.asarray(Image.open(path).convert("L"), float)
    ratio = pix.shape[1] / v.win.width()
    r = v.win.mapFromScene(v.panels[name].vb.sceneBoundingRect()).boundingRect()
    box = pix[int(r.top() * ratio):int(r.bottom() * ratio), int(r.left() * ratio):int(r.right() * ratio)]
    assert box.size > 0
    return (box > 60).mean()


def test_the_uncertainty_panel_shows_the_stream_beside_stimulus_and_reconstruction(tmp_path):
    import pyqtgraph as pg

    from rtdecode.outputs.view import IMAGE_PANELS, BoolRefGuard, Viewer, ViewState

    app = pg.mkQApp("test")
    guard = BoolRefGuard()
    v = Viewer(["tcp://127.0.0.1:1"])
    v.win.resize(1500, 640)
    v.win.show()
    assert IMAGE_PANELS[:3] == ("reconstruction", "stimulus", "uncertainty")
    assert v.titles()["uncertainty"].startswith("uncertainty")
    st = ViewState()
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (36, 64)).astype(np.float32)
    st.take(wire.decode(wire.encode("stim", 0, 0.0, img.astype(np.uint8), trial=0, frame=0)))
    st.take(wire.decode(wire.encode("decoded", 1, 0.0, img, trial=0, frame=0)))
    v.update(st, fresh=True)
    for _ in range(5):
        app.processEvents()
    assert _ink(v, "uncertainty", tmp_path / "none.png") < 0.01  # no stream: an empty panel
    spread = np.zeros((36, 64), np.float32)
    spread[:, 32:] = np.linspace(1.0, 12.0, 32, dtype=np.float32)  # a spread on its own small scale
    st.take(wire.decode(wire.encode("uncertainty", 2, 0.0, spread, trial=0, frame=0)))
    v.update(st, fresh=True)
    for _ in range(5):
        app.processEvents()
    np.testing.assert_array_equal(v.images["uncertainty"].image, spread.T)
    assert v.images["uncertainty"].levels[1] == pytest.approx(np.percentile(spread, 99))
    assert _ink(v, "uncertainty", tmp_path / "spread.png") > 0.2
    assert "spread mean" in v.status.text
    v.win.close()
    guard.check()
