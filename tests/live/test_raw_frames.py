"""A calibration block of a new field of view: no ROIs, raw frames recorded (compressed, bounded), then
extracted offline with ROIs found afterwards (`rtdecode export/fit SESSION --rois`)."""

import socket
import threading
import zipfile

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.errors import ConfigError
from rtdecode.live.config import parse_config
from rtdecode.live.run import run_session
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.rig.sender import SenderConfig, run_sender
from rtdecode.rig.twophoton import Microscope

N, SHAPE, SEED = 40, (128, 128), 7


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _config(port, raw="{max_gib: 1.0}", two_photon="{frame_shape: [128, 128], crop: [64, 64]}"):
    return (f'source: {{protocol: rtframe, address: "tcp://127.0.0.1:{port}"}}\n'
            f"extraction: {{two_photon: {two_photon}}}\n"
            f'outputs: {{publish: "tcp://127.0.0.1:{_free_port()}", raw_frames: {raw}}}\n')


def _send(port, trials, frames):
    # hwm 0: as fast as possible, a loaded machine's session falls more than the default 1,000 messages
    # behind; the sender would drop frames, and the end message a run without --seconds waits for
    cfg = SenderConfig(n_neurons=N, seed=SEED, n_train=3, n_oracle=1, trials=trials, speed=0, frame_shape=SHAPE,
                       endpoint=f"tcp://127.0.0.1:{port}", max_frames=frames, wait_subscriber_s=60, hwm=0)
    th = threading.Thread(target=run_sender, args=(cfg,), daemon=True)
    th.start()
    return th


def _parse(text):
    import yaml

    return parse_config(yaml.safe_load(text))


def test_the_rig_file_states_raw_frames_with_checked_keys():
    ok = _parse(_config(5555))
    assert ok.outputs.raw_frames.max_gib == 1.0 and ok.outputs.raw_frames.level == 1
    assert ok.extraction.two_photon.rois is None
    for raw, what in (("{max_gib: 0}", "max_gib"), ("{max_gib: 2000}", "max_gib"), ("{level: 0}", "level"),
                      ("{level: 10}", "level"), ("{max_gb: 1}", "max_gb")):
        with pytest.raises(ConfigError, match=what):
            _parse(_config(5555, raw=raw))
    with pytest.raises(ConfigError, match="set outputs.raw_frames and extraction.two_photon.frame_shape"):
        _parse(_config(5555, two_photon="{crop: [64, 64]}"))  # no ROIs and no frame size
    with pytest.raises(ConfigError, match="rois: required with a decoder"):
        _parse(_config(5555) + "decoder: {model: m}\n")
    with pytest.raises(ConfigError, match="one field"):
        _parse(_config(5555).replace("address:", "planes: [1, 2], address:"))


def test_a_new_field_of_view_is_recorded_raw_then_extracted_with_rois_found_afterwards(tmp_path, capsys):
    port = _free_port()
    (tmp_path / "calib.yaml").write_text(_config(port))
    th = _send(port, (0, 1, 2), 900)
    # --seconds: a bound never reached (the sender's end message ends the run): a lost sender fails, not hangs
    assert main(["run", str(tmp_path / "calib.yaml"), "--record", str(tmp_path / "calib"), "--seconds", "300"]) == 0
    th.join(30)
    assert "900 frames recorded (900 raw frames kept)" in capsys.readouterr().out
    s = read_session(tmp_path / "calib")
    assert summarize(s)["ok"] and s["meta"]["neurons"] == 0 and "raw" not in s["arrays"]  # GBs: read by chunk
    assert s["arrays"]["raw_saved"].all() and s["arrays"]["activity"].shape == (900, 0)
    with zipfile.ZipFile(next((tmp_path / "calib" / "chunks").glob("*.npz"))) as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_DEFLATED}

    from rtdecode.offline.detect_rois import session_frames

    raw = session_frames(tmp_path / "calib")
    assert raw.shape == (900,) + SHAPE and raw.dtype == np.uint16 and raw.max() > 0

    # no activity recorded: the export says how to get ROIs
    assert main(["export", str(tmp_path / "calib"), "--out", str(tmp_path / "ds0")]) == 1
    assert "rtdecode rois" in capsys.readouterr().err
    # ROIs found afterwards (here the microscope's own): the raw frames extracted with them, then fitted
    Microscope(N, seed=SEED, frame_shape=SHAPE).save_rois(tmp_path / "rois")
    assert main(["export", str(tmp_path / "calib"), "--rois", str(tmp_path / "rois"), "--out", str(tmp_path / "ds")]) == 0
    r = np.load(tmp_path / "ds" / "data" / "responses" / "0.npy")
    assert r.shape[0] == N and np.isfinite(r).all() and r.max() > 0
    assert main(["fit", str(tmp_path / "calib"), "--rois", str(tmp_path / "rois"), "--out", str(tmp_path / "model"),
                 "--window", "4"]) == 0
    assert '"neurons": 40' in (tmp_path / "model" / "card.json").read_text()
    Microscope(N, seed=SEED, frame_shape=(96, 96)).save_rois(tmp_path / "other")
    assert main(["export", str(tmp_path / "calib"), "--rois", str(tmp_path / "other"), "--out", str(tmp_path / "x")]) == 1
    assert "this field of view" in capsys.readouterr().err


def test_raw_frames_stop_at_max_gib_and_the_rows_say_so(tmp_path, caplog):
    """With ROIs too: activity extracted live and raw frames kept side by side."""
    port = _free_port()
    frame_gib = SHAPE[0] * SHAPE[1] * 2 / 2**30
    Microscope(N, seed=SEED, frame_shape=SHAPE).save_rois(tmp_path / "rois")
    (tmp_path / "c.yaml").write_text(_config(port, raw=f"{{max_gib: {frame_gib * 100.5}, level: 9}}",
                                             two_photon="{rois: rois, crop: [64, 64]}"))
    th = _send(port, (0,), 150)
    stats = run_session(tmp_path / "c.yaml", record=tmp_path / "s", seconds=60)
    th.join(30)
    assert stats["frames"] == 150 and stats["raw_frames_recorded"] == 100
    s = read_session(tmp_path / "s")
    assert s["arrays"]["raw_saved"].sum() == 100 and s["arrays"]["raw_saved"][:100].all()
    assert s["arrays"]["activity"].shape == (150, N) and s["arrays"]["F"].shape == (150, N)
    assert "max_gib reached after 100 frames" in caplog.text
    from rtdecode.offline.detect_rois import session_frames

    assert len(session_frames(tmp_path / "s")) == 100
