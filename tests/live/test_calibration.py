"""Day-one workflow on loopback: channels and planes selected from the rig file, a calibration block
recorded with no decoder, a model fitted on it, a live run with that model."""

import socket
import threading
import time

import numpy as np
import pytest
import zmq

from rtdecode.cli import main
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder, temporal_basis
from rtdecode.errors import ConfigError
from rtdecode.extract import build_chain, default_spec
from rtdecode.extract.offline import suite2p_reference
from rtdecode.extract.planes import Planes
from rtdecode.extract.rois import load_suite2p
from rtdecode.live.run import run_session
from rtdecode.outputs.session_reader import read_session
from rtdecode.rig.sender import SenderConfig, run_sender
from rtdecode.rig.twophoton import Microscope
from rtdecode.sources import wire

SHAPE, VOLUMES, BINS = (96, 128), 40, 4
CELLS = {1: 20, 2: 30}  # plane -> ROIs


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    """Two planes (suite2p plane0, plane1), each its own virtual microscope; green frames per plane,
    and red frames that would wreck extraction if they ever reached it (saturated, or zeros)."""
    tmp = tmp_path_factory.mktemp("planes")
    green = {}
    for k, (plane, n) in enumerate(CELLS.items()):
        scope = Microscope(n, seed=10 + plane, frame_shape=SHAPE)
        scope.save_rois(tmp / "suite2p" / f"plane{k}")
        green[plane] = scope.render_movie(scope.poisson_spikes(VOLUMES, seed=plane))
    return tmp, green


def _messages(green):
    """ScanImage order: per volume, per plane (frameNumberAcq +1 per slice), every channel; a third
    plane (not in the rig file) is acquired too."""
    rng = np.random.default_rng(0)
    seq = wire.Sequencer()
    out, acq = [], 0
    for v in range(VOLUMES):
        for plane in (1, 2, 3):
            acq += 1
            img = green[plane][v] if plane in green else rng.integers(0, 4096, SHAPE).astype(np.uint16)
            red = np.full(SHAPE, 4095, np.uint16) if v % 2 else np.zeros(SHAPE, np.uint16)
            for channel, frame in ((1, img), (2, red)):
                out.append(wire.encode("frame", seq(), time.time(), frame, frameNumberAcq=acq,
                                       frameTimestamp=acq / 90.0, channel=channel, plane=plane))
    out.append(wire.encode("stats", seq(), time.time(), None, end=True, frames=acq))
    return out


def _serve(messages):
    """An XPUB that sends `messages` once a subscriber is there; returns (endpoint, thread)."""
    sock = zmq.Context.instance().socket(zmq.XPUB)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.LINGER, 2000)
    sock.bind("tcp://127.0.0.1:*")

    def send():
        try:
            assert sock.poll(30000)
            sock.recv()
            time.sleep(0.05)
            for m in messages:
                sock.send_multipart(m)
        finally:
            sock.close()

    th = threading.Thread(target=send, daemon=True)
    th.start()
    return sock.getsockopt_string(zmq.LAST_ENDPOINT), th


def _rig_file(tmp, endpoint, decoder=""):
    (tmp / "rig.yaml").write_text(f"""
source:
  protocol: rtframe
  address: "{endpoint}"
  channel: 1
  planes: [1, 2]
extraction:
  two_photon: {{rois: [suite2p/plane0, suite2p/plane1], crop: [64, 64]}}
outputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}
{decoder}""")
    return tmp / "rig.yaml"


def _offline(tmp, green):
    """The activity each plane's own chain gives on that plane's green frames, concatenated."""
    parts = []
    for k, plane in enumerate(CELLS):
        folder = tmp / "suite2p" / f"plane{k}"
        chain = build_chain(default_spec(crop=(64, 64)), load_suite2p(folder), suite2p_reference(folder))
        parts.append(np.stack([chain.process(f).copy() for f in green[plane]]))
    return np.concatenate(parts, axis=1)


def test_two_channels_two_planes_are_extracted_per_plane_from_the_selected_channel(volume, tmp_path):
    tmp, green = volume
    endpoint, th = _serve(_messages(green))
    cfg = _rig_file(tmp, endpoint)
    stats = run_session(cfg, record=tmp_path / "calib", seconds=120)
    th.join(10)
    assert stats["backend"] is None and stats["frames"] == VOLUMES  # one activity vector per volume
    # every red frame (3 planes) and the green frames of plane 3 were counted and left out
    assert stats["ignored_frames"] == {"other_channel": 3 * VOLUMES, "other_plane": VOLUMES, "other_roi": 0}
    assert stats["incomplete_volumes"] == 0 and stats["lost_frames"] == 0 and stats["dropped"] == 0
    assert set(stats["stages_ms"]) >= {"plane1.register", "plane2.register"}
    s = read_session(tmp_path / "calib")
    act = s["arrays"]["activity"]
    assert act.shape == (VOLUMES, sum(CELLS.values())) and s["meta"]["neurons"] == 50
    # plane order, then ROI order; identical to each plane's chain fed with its green frames only
    np.testing.assert_allclose(act, _offline(tmp, green), rtol=1e-5, atol=1e-5)
    assert s["arrays"]["number"].tolist() == [3 * v + 2 for v in range(VOLUMES)]  # the last plane's frame
    assert s["arrays"]["shifts"].shape == (VOLUMES, 2, 2)
    assert (tmp_path / "calib" / "rois_plane1.npz").is_file() and (tmp_path / "calib" / "rois_plane2.npz").is_file()
    assert np.isnan(s["arrays"]["decoded"]).all() and s["meta"]["calibration"]


def test_two_planes_decode_live(volume, tmp_path):
    """The volume's 50-vector feeds the ring and a 50-neuron model; a wrong neuron count is refused."""
    tmp, green = volume
    rng = np.random.default_rng(0)
    n = sum(CELLS.values())
    dec = RidgeDecoder(np.zeros(n, np.float32), np.ones(n, np.float32), temporal_basis(BINS, 2),
                       rng.normal(size=(n * 2, 36 * 64)).astype(np.float32), np.full(36 * 64, 127.5, np.float32),
                       (36, 64), 0)
    model_dir.save(tmp_path / "model", model_dir.new_card("ridge", n, 0, BINS, (36, 64), 30.0), dec.arrays())
    endpoint, th = _serve(_messages(green))
    cfg = _rig_file(tmp, endpoint, f"decoder: {{model: '{tmp_path / 'model'}', backends: [numpy]}}")
    stats = run_session(cfg, seconds=120)
    th.join(10)
    assert stats["frames"] == VOLUMES and stats["published"] == VOLUMES - (BINS - 1)
    assert stats["ignored_frames"]["other_channel"] == 3 * VOLUMES
    model_dir.save(tmp_path / "m49", model_dir.new_card("ridge", n - 1, 0, BINS, (36, 64), 30.0),
                   RidgeDecoder(np.zeros(n - 1, np.float32), np.ones(n - 1, np.float32), temporal_basis(BINS, 2),
                                np.zeros(((n - 1) * 2, 36 * 64), np.float32), np.zeros(36 * 64, np.float32),
                                (36, 64), 0).arrays())
    cfg = _rig_file(tmp, endpoint, f"decoder: {{model: '{tmp_path / 'm49'}', backends: [numpy]}}")
    with pytest.raises(ConfigError, match="hold 50 ROIs in all.* 49 neurons"):
        run_session(cfg, seconds=1)


def test_planes_count_incomplete_volumes():
    class Half:  # a stand-in chain: activity = first row of the frame
        def __init__(self, n):
            from rtdecode.stage import Spec
            self.out_spec = Spec(np.float32, (n,))

        def process(self, frame):
            return frame[0, : self.out_spec.shape[0]].astype(np.float32)

    p = Planes(1, [2, 5], [Half(2), Half(3)])
    assert p.ignore({"channel": 2, "plane": 2}) == "other_channel" and p.ignore({"channel": 1, "plane": 3}) == "other_plane"
    assert p.ignore({"channel": 1, "plane": 5}) is None and p.ignore({"channel": 1, "plane": 5, "roi": 1}) is None
    assert p.ignore({"channel": 1, "plane": 5, "roi": 2}) == "other_roi"
    f = np.arange(10, dtype=np.float32).reshape(2, 5)
    assert p.add(2, f) is None
    np.testing.assert_array_equal(p.add(5, f + 10), [0, 1, 10, 11, 12])
    assert p.add(5, f) is not None and p.incomplete == 1  # plane 2 of that volume never came
    with pytest.raises(ConfigError):
        Planes(1, [2, 1])


def test_calibration_block_without_a_decoder_then_fit_then_live(tmp_path):
    """`rtdecode run` with no decoder records a calibration block (activity + stimulus), `rtdecode fit
    SESSION` fits on it, and the rig file with that model runs live."""
    n, shape = 40, (128, 128)
    Microscope(n, seed=7, frame_shape=shape).save_rois(tmp_path / "rois")
    port = _free_port()
    base = f"""
source: {{protocol: rtframe, address: "tcp://127.0.0.1:{port}"}}
extraction: {{two_photon: {{rois: rois, crop: [64, 64]}}}}
outputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}
"""
    (tmp_path / "calib.yaml").write_text(base)
    with pytest.raises(ConfigError, match="calibration block; give --record"):
        run_session(tmp_path / "calib.yaml", seconds=1)

    def send(trials, frames):
        # hwm 0: as fast as possible, a loaded machine's session falls behind by more than the default
        # 1,000 queued messages; the sender then dropped frames and, with them, the end message the
        # run without --seconds waits for (the test hung). Here nothing is dropped.
        cfg = SenderConfig(n_neurons=n, seed=7, n_train=3, n_oracle=1, trials=trials, speed=0, frame_shape=shape,
                           endpoint=f"tcp://127.0.0.1:{port}", max_frames=frames, wait_subscriber_s=60, hwm=0)
        th = threading.Thread(target=run_sender, args=(cfg,), daemon=True)
        th.start()
        return th

    th = send((0, 1, 2), 900)
    # --seconds: a bound, never reached (the sender's end message ends the run), so a lost sender fails the test
    assert main(["run", str(tmp_path / "calib.yaml"), "--record", str(tmp_path / "calib"), "--seconds", "300"]) == 0
    th.join(30)
    s = read_session(tmp_path / "calib")
    assert s["end"]["frames"] == 900 and s["end"]["published"] == 0 and s["end"]["dropped"] == 0
    assert sorted(set(s["arrays"]["shown"][:, 0].tolist())) == [0, 1, 2]
    assert s["arrays"]["stimulus"].any()  # the stimulus images are kept: the fit's videos

    assert main(["fit", str(tmp_path / "calib"), "--out", str(tmp_path / "model"), "--window", str(BINS)]) == 0
    card, _ = model_dir.load(tmp_path / "model")
    assert card.neurons == n and card.window.bins == BINS

    (tmp_path / "live.yaml").write_text(base + "decoder: {model: model, backends: [numpy]}\n")
    th = send((3,), 60)
    stats = run_session(tmp_path / "live.yaml", record=tmp_path / "live", seconds=120)
    th.join(30)
    assert stats["backend"] == "numpy" and stats["frames"] == 60 and stats["published"] == 60 - (BINS - 1)
    assert main(["inspect", str(tmp_path / "live")]) == 0
