"""The live loop on loopback sockets: bad frames are counted and skipped, the session keeps going."""

import threading
import time

import numpy as np
import zmq

from rtdecode import decode
from rtdecode.sources import wire
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder, temporal_basis
from rtdecode.extract import build_chain
from rtdecode.extract.register import reference_from
from rtdecode.extract.rois import load_suite2p
from rtdecode.sources.ingest import Ingest
from rtdecode.live.session import LiveSession
from rtdecode.outputs.publish import Publisher
from rtdecode.rig.twophoton import Microscope
from rtdecode.extract.ring import ActivityRing
from rtdecode.stage import Chain


def _session(tmp_path, n=30, shape=(128, 128), bins=4):
    scope = Microscope(n, seed=5, frame_shape=shape)
    scope.save_rois(tmp_path / "rois")
    spikes = scope.poisson_spikes(80, seed=1)
    frames = scope.render_movie(spikes)
    extract = build_chain(None, load_suite2p(tmp_path / "rois"), reference_from(frames[:20]))
    rng = np.random.default_rng(0)
    dec = RidgeDecoder(np.zeros(n, np.float32), np.ones(n, np.float32), temporal_basis(bins, 2),
                       rng.normal(size=(n * 2, 36 * 64)).astype(np.float32), np.full(36 * 64, 127.5, np.float32),
                       (36, 64), 0)
    card = model_dir.new_card("ridge", n, 0, bins, (36, 64), 30.0)
    model_dir.save(tmp_path / "m", card, dec.arrays())
    card, dec = decode.load(tmp_path / "m")
    chain = Chain(extract.stages + [ActivityRing(n, bins), decode.DecodeStage(card, dec)])
    return chain, frames


def test_session_survives_bad_frames_and_counts_them(tmp_path):
    chain, frames = _session(tmp_path)
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.bind("tcp://127.0.0.1:*")
    ep = pub.getsockopt_string(zmq.LAST_ENDPOINT)
    ingest = Ingest([ep])
    out = Publisher()
    watcher = ctx.socket(zmq.SUB)
    watcher.setsockopt(zmq.SUBSCRIBE, b"decoded")
    watcher.connect(out.endpoint)
    session = LiveSession(ingest, chain, out, lag_min=0)

    def send():
        time.sleep(0.3)  # let the subscriptions arrive
        seq = wire.Sequencer()
        for k, f in enumerate(frames):
            pub.send_multipart(wire.encode("stim", seq(), time.time(), None, frame=k, trial=0))
            if k == 10:  # a frame of the wrong shape: rejected by the first stage's contract
                pub.send_multipart(wire.encode("frame", seq(), time.time(), f[:64], frameNumberAcq=k, channel=1, plane=1))
            if k == 20:  # garbage on the wire
                pub.send_multipart([b"frame", b"{", b""])
            if k == 30:
                seq()  # a message lost in transport
            pub.send_multipart(wire.encode("frame", seq(), time.time(), f, frameNumberAcq=k + 1, channel=1, plane=1))
            time.sleep(0.01)  # stim labels are matched by time: 2 ms apart, a loaded machine swapped two
        pub.send_multipart(wire.encode("stats", seq(), time.time(), None, end=True))

    th = threading.Thread(target=send)
    th.start()
    res = session.run(seconds=30)
    th.join()
    assert res.ended
    assert res.frames == len(frames) and res.rejected_frames == 1
    assert ingest.n_rejected == 1 and ingest.dropped == 1
    assert res.published == len(frames) - 3
    got = []
    while watcher.poll(200):
        got.append(wire.decode(watcher.recv_multipart()))
    assert len(got) == res.published
    # Decoded frame k refers to the stimulus shown bins-1 frames before the newest bin. Checked on the
    # second half: over the first frames the publisher's clock offset estimate (minimum delay) is still
    # settling, and on a loaded machine it moved by more than the 10 ms between two stim messages
    # (labels [1, 1, 2] for [0, 1, 2]).
    half = len(got) // 2
    assert [m.header["frame"] for m in got[half:]] == list(range(half, len(got)))
    assert got[0].array.shape == (36, 64)
    for s in (pub, watcher):
        s.close()
    ingest.close()
    out.close()


def test_graph_mismatch_is_caught_before_the_first_frame(tmp_path):
    import pytest

    from rtdecode.errors import StageError

    chain, _ = _session(tmp_path)
    with pytest.raises(StageError, match="gives <f4\\[30\\] but the next stage 'decode' takes <f4\\[30, 4\\]"):
        Chain(chain.stages[:-2] + [chain.stages[-1]])
