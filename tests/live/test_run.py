"""`rtdecode run CONFIG` on loopback: the virtual rig's sender, a rig file, a compiled decoder."""

import socket
import threading

import numpy as np
import pytest

from rtdecode.cli import main
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder, temporal_basis
from rtdecode.errors import ConfigError
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.rig.sender import SenderConfig, run_sender
from rtdecode.rig.twophoton import Microscope
from rtdecode.live.run import run_session

N, SHAPE, SEED, BINS = 40, (128, 128), 7, 4


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def rig(tmp_path):
    Microscope(N, seed=SEED, frame_shape=SHAPE).save_rois(tmp_path / "rois")
    rng = np.random.default_rng(0)
    dec = RidgeDecoder(np.zeros(N, np.float32), np.ones(N, np.float32), temporal_basis(BINS, 2),
                       rng.normal(size=(N * 2, 36 * 64)).astype(np.float32), np.full(36 * 64, 127.5, np.float32),
                       (36, 64), 0)
    model_dir.save(tmp_path / "model", model_dir.new_card("ridge", N, 0, BINS, (36, 64), 30.0), dec.arrays())
    port = _free_port()
    (tmp_path / "rig.yaml").write_text(f"""
rig: test
source: {{protocol: rtframe, address: "tcp://127.0.0.1:{port}"}}
extraction: {{two_photon: {{rois: rois, crop: [64, 64]}}}}
decoder: {{model: model, backends: [tensorrt, onnxruntime, numpy]}}
outputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}
""")
    return tmp_path, port


def _send(port, frames):
    cfg = SenderConfig(n_neurons=N, seed=SEED, n_train=1, n_oracle=1, speed=0, frame_shape=SHAPE,
                       endpoint=f"tcp://127.0.0.1:{port}", max_frames=frames, wait_subscriber_s=60)
    th = threading.Thread(target=run_sender, args=(cfg,), daemon=True)
    th.start()
    return th


def test_run_uses_the_chosen_backend_and_records(rig):
    tmp, port = rig
    assert main(["compile", str(tmp / "model"), "--backend", "onnxruntime"]) == 0
    th = _send(port, 90)
    stats = run_session(tmp / "rig.yaml", record=tmp / "session", seconds=60)
    th.join(timeout=30)
    assert stats["backend"] == "onnxruntime"  # tensorrt is skipped where it is not installed
    assert stats["frames"] == 90 and stats["published"] == 90 - (BINS - 1) and stats["dropped"] == 0
    s = summarize(read_session(tmp / "session"))
    assert s["frames"] == 90 and s["gaps"] == 0 and s["clean_stop"]


def test_run_falls_back_to_numpy_without_an_exported_graph(rig, caplog):
    tmp, port = rig
    th = _send(port, 30)
    stats = run_session(tmp / "rig.yaml", seconds=60)
    th.join(timeout=30)
    assert stats["backend"] == "numpy" and stats["published"] == 30 - (BINS - 1)
    assert "falling back to numpy" in caplog.text


def test_run_refuses_what_it_cannot_do(rig):
    tmp, _ = rig
    text = (tmp / "rig.yaml").read_text()
    (tmp / "t.yaml").write_text(text + "triggers: [{name: t, kind: zmq, address: 'tcp://127.0.0.1:5999'}]\n")
    with pytest.raises(ConfigError, match="triggers.0.rule: 't' has no rule"):
        run_session(tmp / "t.yaml", seconds=1)
    (tmp / "b.yaml").write_text(text.replace("backends: [tensorrt, onnxruntime, numpy]", "backends: [tensorrt]"))
    with pytest.raises(ConfigError, match="decoder.backends"):
        run_session(tmp / "b.yaml", seconds=1)


def test_run_refuses_a_refined_stream_without_an_encoder(rig):
    """outputs.refined with a ridge model: a ConfigError before anything is opened (rtdecode.live.refiner)."""
    tmp, _ = rig
    text = (tmp / "rig.yaml").read_text().replace("outputs: {publish:", "outputs: {refined: true, publish:")
    (tmp / "r.yaml").write_text(text)
    with pytest.raises(ConfigError, match="outputs.refined: the model .* has no encoder"):
        run_session(tmp / "r.yaml", record=tmp / "s", seconds=1)
    assert not (tmp / "s").exists()


def test_run_fires_the_rig_files_trigger_rules(rig):
    """A rule from the YAML file: any frame's mean luminance >= 0 fires (refractory 0), out on its
    own ZeroMQ address and into the session's triggers.jsonl."""
    import zmq

    from rtdecode.sources import wire

    tmp, port = rig
    out_port = _free_port()
    # the sender streams as fast as it can, so frames queue: a generous max_age_ms lets this test be
    # about the rule (triggers on stale frames are tested in tests/live/test_config_freshness.py)
    (tmp / "t.yaml").write_text((tmp / "rig.yaml").read_text() + f"""
max_age_ms: 60000
triggers:
  - name: always
    kind: zmq
    address: "tcp://127.0.0.1:{out_port}"
    rule: {{kind: luminance, threshold: -1, region: [0, 18, 0, 32]}}
""")
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"trigger")
    sub.connect(f"tcp://127.0.0.1:{out_port}")
    th = _send(port, 30)
    stats = run_session(tmp / "t.yaml", record=tmp / "s", seconds=60)
    th.join(timeout=30)
    assert stats["triggers"]["fired"] == 30 - (BINS - 1) and stats["triggers"]["enabled"]
    got = 0
    while sub.poll(500):
        msg = wire.decode(sub.recv_multipart())
        assert msg.topic == "trigger" and msg.header["rule"] == "always"
        got += 1
    sub.close()
    assert 0 < got <= stats["triggers"]["fired"]  # PUB/SUB may lose the first ones while joining
    assert summarize(read_session(tmp / "s"))["triggers"] == stats["triggers"]["fired"]
