"""ScanImage-style frames and a TIFF replay reach the decoder through the virtual rig's live path:
Ingest -> LiveSession(Chain(extraction stages + ActivityRing + DecodeStage)) -> Publisher."""

import threading
import time

import numpy as np
import pytest
import tifffile
import zmq

from rtdecode import decode
from rtdecode.sources import wire
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder, temporal_basis
from rtdecode.errors import StageError
from rtdecode.extract import build_chain, default_spec
from rtdecode.extract.register import reference_from
from rtdecode.extract.rois import load_suite2p
from rtdecode.sources.ingest import Ingest
from rtdecode.live.session import LiveSession
from rtdecode.outputs.publish import Publisher
from rtdecode.rig.twophoton import Microscope
from rtdecode.extract.ring import ActivityRing
from rtdecode.sources.scanimage import matlab_equivalent_message, replay_tiff
from rtdecode.stage import Chain

N, BINS, SHAPE, FRAMES = 25, 4, (96, 128), 40


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay_path")
    scope = Microscope(N, seed=7, frame_shape=SHAPE)
    scope.save_rois(tmp / "rois")
    frames = scope.render_movie(scope.poisson_spikes(FRAMES, seed=2))
    assert frames.dtype == np.uint16 and frames.max() < 2**15  # fits int16 too (ScanImage's class)
    rng = np.random.default_rng(0)
    dec = RidgeDecoder(np.zeros(N, np.float32), np.ones(N, np.float32), temporal_basis(BINS, 2),
                       rng.normal(size=(N * 2, 36 * 64)).astype(np.float32), np.full(36 * 64, 127.5, np.float32),
                       (36, 64), 0)
    model_dir.save(tmp / "m", model_dir.new_card("ridge", N, 0, BINS, (36, 64), 30.0), dec.arrays())
    return tmp, frames


def _chain(tmp, frames, frame_dtype=np.uint16):
    extract = build_chain(default_spec(crop=(64, 64)), load_suite2p(tmp / "rois"), reference_from(frames[:20]),
                          frame_dtype=frame_dtype)
    card, dec = decode.load(tmp / "m")
    chain = Chain(extract.stages + [ActivityRing(N, BINS), decode.DecodeStage(card, dec)])
    chain.warm_up()
    return chain


def _run(chain, ingest, send):
    """Run the live session while `send()` publishes; return (result, decoded messages)."""
    out = Publisher()
    watcher = zmq.Context.instance().socket(zmq.SUB)
    watcher.setsockopt(zmq.SUBSCRIBE, b"decoded")
    watcher.setsockopt(zmq.LINGER, 0)
    watcher.connect(out.endpoint)
    time.sleep(0.1)  # the watcher's subscription reaches the publisher
    session = LiveSession(ingest, chain, out, lag_min=0)
    th = threading.Thread(target=send, daemon=True)
    th.start()
    try:
        res = session.run(seconds=60, idle_timeout_s=10)
        th.join(10)
        got = []
        while watcher.poll(300):
            got.append(wire.decode(watcher.recv_multipart()))
    finally:
        watcher.close()
        out.close()
        ingest.close()
    return res, got, session.target_back


def test_frame_type_is_part_of_the_contract(rig):
    """A chain set up for uint16 rejects ScanImage's int16 frames with a clear message; one set up
    for int16 (extraction.two_photon.frame_dtype) takes them and gives the same activity."""
    tmp, frames = rig
    chain = _chain(tmp, frames)
    with pytest.raises(StageError, match="expected <u2 .* got <i2"):
        chain.process(frames[0].astype(np.int16))
    a = _chain(tmp, frames)
    b = _chain(tmp, frames, np.int16)
    for f in frames[:10]:
        np.testing.assert_allclose(b.process(f.astype(np.int16)), a.process(f), rtol=1e-5, atol=1e-5)


def test_scanimage_stream_reaches_the_decoder(rig):
    tmp, frames = rig
    chain = _chain(tmp, frames, np.int16)
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.SNDHWM, 0)
    pub.setsockopt(zmq.LINGER, 1000)
    pub.bind("tcp://127.0.0.1:*")
    ingest = Ingest([pub.getsockopt_string(zmq.LAST_ENDPOINT)])

    def send():
        assert pub.poll(5000)
        pub.recv()
        time.sleep(0.05)
        seq = wire.Sequencer()
        for k, f in enumerate(frames):
            image_data = f.astype(np.int16).T  # as ScanImage holds it: imageData(x, y), int16
            pub.send_multipart(matlab_equivalent_message(image_data, seq(), time.time(), k + 1, k / 30.0, 1, 1))
        pub.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True))

    try:
        res, got, back = _run(chain, ingest, send)
    finally:
        pub.close()
    assert res.ended and res.frames == FRAMES and res.rejected_frames == 0 and res.errors == 0
    assert res.published == FRAMES - back and len(got) == res.published
    assert [m.header["frameNumberAcq"] for m in got] == list(range(back + 1, FRAMES + 1))
    assert all(m.array.shape == (36, 64) and np.isfinite(m.array).all() for m in got)
    assert ingest.n_rejected == 0 and ingest.dropped == 0


def test_tiff_replay_reaches_the_decoder(rig, tmp_path):
    tmp, frames = rig
    chain = _chain(tmp, frames)
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, frames)
    ready = threading.Event()
    box = {}

    def on_ready(ep):
        box["ep"] = ep
        ready.set()

    rep = threading.Thread(target=lambda: box.setdefault("stats", replay_tiff(path, speed=0, ready=on_ready)),
                           daemon=True)
    rep.start()
    assert ready.wait(5)
    ingest = Ingest([box["ep"]])
    res, got, back = _run(chain, ingest, lambda: rep.join(30))
    assert box["stats"]["frames"] == FRAMES
    assert res.ended and res.frames == FRAMES and res.rejected_frames == 0 and res.errors == 0
    assert res.published == FRAMES - back and len(got) == res.published
    assert [m.header["frameNumberAcq"] for m in got] == list(range(back + 1, FRAMES + 1))
    # the decoded stream is the one the chain computes offline on the same frames
    offline = _chain(tmp, frames)
    expected = [offline.process(f).copy() for f in frames][back:]
    np.testing.assert_allclose(np.stack([m.array for m in got]), np.stack(expected), rtol=1e-5, atol=1e-3)
