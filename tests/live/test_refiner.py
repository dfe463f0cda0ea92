"""The warm start, live (rtdecode.live.refiner): a background process refines the decoded frames with the
model's iterative inverse and the session publishes them as 'refined' over a real loopback ZeroMQ socket,
records them and scores them against the decoded stream; the live loop never waits for it (a slow
refiner still lets every decoded frame out), and a refiner that fails or dies is counted, restarted or
turned off, and never ends the session."""

import multiprocessing as mp
import time
from types import SimpleNamespace

import numpy as np
import pytest
import zmq

from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import random_decoder
from rtdecode.errors import ConfigError
from rtdecode.live.config import Outputs
from rtdecode.live.graph import assemble, live_chain, load_decoder
from rtdecode.live.refiner import BEHAVIOUR, has_encoder, make_refiner
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.sources import wire
from tests.conftest import shared_folder
from tests.decode.conftest import TINY_OPTIONS

FRAMES = 16  # the refiner's window in these tests


@pytest.fixture(scope="module")
def encoder_model(tiny_dataset, tmp_path_factory):
    """tests/decode's tiny amortized model with an encoder (40 encoder steps): the same build under the same
    shared name, so one xdist run fits it once."""
    import torch

    from rtdecode.decode.inverse import InverseConfig
    from rtdecode.offline.fit import fit_dataset

    torch.set_num_threads(1)

    def fit(folder):
        fit_dataset(tiny_dataset, folder / "model", method="amortized", progress=False,
                    inverse_cfg=InverseConfig(iterations=5), **TINY_OPTIONS)

    return shared_folder(tmp_path_factory, "tiny_model", fit) / "model"


class Paced:
    """An ingest of prepared messages handed out at `fps` (a stim message with its image just before each
    frame, the activity vector as the frame's payload), the trial again and again (trial r: the r-th
    pass) until `until()` holds after at least `repeat` passes (or `max_repeat`), then the end. The
    refiner's speed depends on the machine's load: the tests wait for what they check, not a fixed time."""

    def __init__(self, responses, movie, fps=60.0, repeat=1, until=None, max_repeat=20):
        self.responses, self.movie, self.fps = responses, movie, fps
        self.repeat, self.until, self.max_repeat = repeat, until, max_repeat
        self.T = responses.shape[1]
        self.i = 0  # messages handed out
        self.start = None
        self.ended = False

    def _next(self):
        frame_no, is_frame = divmod(self.i, 2)
        r, k = divmod(frame_no, self.T)
        if k == 0 and not is_frame and r >= self.repeat and (self.until is None or self.until() or r >= self.max_repeat):
            self.ended = True
            return wire.Message("stats", {"v": 1, "seq": self.i, "t": time.time(), "end": True}), frame_no
        if is_frame:
            m = wire.decode(wire.encode("frame", self.i, time.time(), np.ascontiguousarray(self.responses[:, k], np.float32),
                                        frameNumberAcq=frame_no + 1, channel=1, plane=1))
        else:
            m = wire.decode(wire.encode("stim", self.i, time.time(), self.movie[k].astype(np.uint8), trial=r, frame=k))
        return m, frame_no

    def receive(self, timeout_ms=50):
        if self.ended:
            return None
        now = time.monotonic()
        if self.start is None:
            self.start = now
        wait = self.start + (self.i // 2) / self.fps - now
        if wait > 0:
            time.sleep(min(wait, timeout_ms / 1e3))
            return None
        m, _ = self._next()
        self.i += 1
        m.received = m.acquired = time.perf_counter()
        m.local_t = time.time()
        return m

    def counts(self):
        return {}

    def close(self):
        pass


def _trial(tiny_dataset, i=0):
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(tiny_dataset)
    tr = ds.load(ds.require("oracle")[i])
    return tr.responses.astype(np.float32), tr.video


def _run(model, trial, tmp_path, record=True, fps=60.0, repeat=1, until=None, max_repeat=20, **refiner_options):
    """A session over `trial` (see Paced) with a refiner; until(refiner): when the stream may end."""
    dec = load_decoder(model, ("numpy",))
    pub = Publisher()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100000)
    for topic in (b"decoded", b"refined"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(pub.endpoint)
    refiner = make_refiner(model, dec.card, frames=FRAMES, **refiner_options)
    assert refiner.wait_ready(120), "the refiner process did not start"
    paced = Paced(*trial, fps=fps, repeat=repeat, until=None if until is None else (lambda: until(refiner)),
                  max_repeat=max_repeat)
    graph = assemble(paced, live_chain([], dec), lambda: pub,
                     n_neurons=dec.card.neurons, frame_shape=dec.card.frame_shape, fps=30.0,
                     record=tmp_path / "s" if record else None, refiner=refiner)
    session = graph.session(lag_min=dec.card.window.lag_min, collect=True, max_age_s=None)
    stats = None
    try:
        res = session.run(seconds=300)
        stats = session.stats(final=True)
        got = []
        while sub.poll(300):
            got.append(wire.decode(sub.recv_multipart()))
    finally:
        graph.close(stats)
        sub.close()
    return dec, refiner, session, res, stats, got


def _no_refiner_left():
    return not [p for p in mp.active_children() if p.name == "rtdecode-refiner"]


def test_refined_frames_are_published_recorded_and_are_the_warm_inverse(encoder_model, tiny_dataset, tmp_path):
    import torch

    from rtdecode import decode
    from rtdecode.decode.inverse import InverseConfig, invert

    trial = _trial(tiny_dataset)
    # until 3 refined frames whose window lies in one pass of the trial (the check against `invert` below)
    dec, refiner, session, res, stats, msgs = _run(
        encoder_model, trial, tmp_path,
        until=lambda ref: sum(f >= FRAMES - 1 for (_, f) in ref.collected) >= 3)
    decoded = {m.header["frameNumberAcq"]: m for m in msgs if m.topic == "decoded"}
    refined = [m for m in msgs if m.topic == "refined"]
    r = stats["refined"]
    assert res.stopped_by == "source" and len(decoded) == res.published > 0
    assert len(refined) == r["published"] > 0 and r["errors"] == r["crashes"] == r["lost"] == 0
    assert r["offered"] == res.published and r["iterations"] == dec.card.warm_iterations and r["behaviour"] == BEHAVIOUR
    accounted = r["published"] + r["skipped"] + r["not_ready"]
    assert r["offered"] - accounted in (0, 1)  # one may still be in the refiner at the end
    assert r["not_ready"] >= FRAMES - 1  # the window fills first
    H, W = dec.card.frame_shape
    for m in refined:  # the wire format of 'decoded', for the frame it refines, with its own latency
        d = decoded[m.header["frameNumberAcq"]]
        assert m.array.shape == (H, W) and m.array.dtype == np.float32 and np.isfinite(m.array).all()
        for key in ("trial", "frame", "target_t", "target_local_t"):
            assert m.header[key] == d.header[key], key
        assert m.header["latency_ms"] > 0 and m.header["iterations"] == r["iterations"]
    assert r["acquired_to_published_ms"]["n"] == len(refined) and r["acquired_to_published_ms"]["p50"] > 0
    # each refined frame is the warm-start inverse of its window, as offline: the decoded frames of the
    # last FRAMES targets as the start, their activity, the encoder's mean behaviour
    _, pipe = decode.load(encoder_model)
    torch.set_num_threads(1)
    cfg = InverseConfig(**{**vars(pipe.inverse_cfg), "iterations": r["iterations"]})
    cfg.warmup = min(cfg.warmup, max(1, cfg.iterations // 2))
    beh = np.repeat(pipe.encoders[0].beh_mean.numpy()[None], FRAMES, 0)
    responses = trial[0]
    checked = [m for m in refined if m.header["frame"] >= FRAMES - 1][:3]
    assert len(checked) == 3
    for m in checked:
        k, t = m.header["frame"], m.header["trial"]
        init = np.stack([res.decoded[(t, f)] for f in range(k - FRAMES + 1, k + 1)])
        want, _ = invert(pipe.encoders, responses[:, k - FRAMES + 1:k + 1], beh, mask=pipe.mask, init=init, cfg=cfg)
        np.testing.assert_allclose(m.array, want[-1], atol=0.05)
        assert not np.allclose(m.array, res.decoded[(t, k)], atol=0.5)  # it did change the frame
    # scored against the stimulus, beside the decoded frames of the same targets, per trial
    q = r["quality"]
    scored = [m for m in refined if m.header["frame"] >= q["skip_frames"]]
    assert q["frames"] == len(scored) and set(q["per_trial"]) == {str(m.header["trial"]) for m in scored}
    for v in q["per_trial"].values():
        if v["refined"] is not None and v["decoded"] is not None:
            assert v["gain"] == pytest.approx(v["refined"] - v["decoded"], abs=2e-4)
    # recorded in the row of the frame at which it was published, with the number of the frame it refines
    a = read_session(tmp_path / "s")["arrays"]
    rows = ~np.isnan(a["refined_of"])
    assert rows.sum() == len(refined)
    by_number = {m.header["frameNumberAcq"]: m.array for m in refined}
    for of, row in zip(a["refined_of"][rows], a["refined"][rows]):
        np.testing.assert_array_equal(row, by_number[int(of)])
    assert np.isnan(a["refined"][~rows]).all()
    summary = summarize(read_session(tmp_path / "s"))
    assert summary["refined_frames"] == len(refined) and summary["refined_quality"]["frames"] == q["frames"]
    assert _no_refiner_left()


def test_a_slow_refiner_never_delays_the_decoded_stream(encoder_model, tiny_dataset, tmp_path):
    dec, refiner, session, res, stats, msgs = _run(encoder_model, _trial(tiny_dataset), tmp_path, record=False,
                                                   fps=30.0, until=lambda ref: ref.published >= 1,
                                                   debug={"delay_s": 1.0})
    back = dec.card.window.bins - 1 + dec.card.window.lag_min
    r = stats["refined"]
    assert res.frames % 120 == 0 and res.published == res.frames - back  # every decoded frame went out
    assert len([m for m in msgs if m.topic == "decoded"]) == res.published
    assert r["published"] >= 1 and r["skipped"] > r["published"]  # it could take few: the rest were skipped
    assert res.latency.max < 0.5  # the loop never waited for a 1 s refinement
    assert _no_refiner_left()


def test_a_refiner_that_fails_or_dies_is_counted_and_the_session_ends_cleanly(encoder_model, tiny_dataset, tmp_path):
    trial = _trial(tiny_dataset)
    # an exception in a job: counted, the refiner goes on
    dec, refiner, session, res, stats, msgs = _run(encoder_model, trial, tmp_path, record=False,
                                                   until=lambda ref: ref.published >= 1, debug={"raise_on_job": 1})
    back = dec.card.window.bins - 1 + dec.card.window.lag_min
    r = stats["refined"]
    assert res.stopped_by == "source" and res.published == res.frames - back
    assert r["errors"] == 1 and r["published"] >= 1 and r["crashes"] == 0 and r["disabled"] is None
    # a process that dies: counted, restarted (in a thread: the loop goes on), then off after max_restarts
    dec, refiner, session, res, stats, msgs = _run(encoder_model, trial, tmp_path, record=False,
                                                   until=lambda ref: ref.disabled is not None, max_repeat=60,
                                                   debug={"crash_on_job": 1}, max_restarts=1)
    r = stats["refined"]
    assert res.stopped_by == "source" and res.published == res.frames - back and res.errors == 0
    assert r["crashes"] == r["lost"] == 2 and r["restarts"] == 1 and r["published"] == 0
    assert "died 2 times" in r["disabled"]
    assert [m for m in msgs if m.topic == "refined"] == []
    assert refiner._link is None and _no_refiner_left()  # close() stopped it


def test_it_needs_a_model_with_an_encoder(tmp_path):
    assert Outputs().refined is False and Outputs(refined=True, refined_iterations=3).refined_iterations == 3
    folder = tmp_path / "ridge"
    model_dir.save(folder, model_dir.new_card("ridge", 20, 0, 4, (36, 64), 30.0),
                   random_decoder(20, 4, (36, 64), lag_min=0, seed=1).arrays())
    card, _ = model_dir.load(folder)
    with pytest.raises(ConfigError, match="outputs.refined: the model .* has no encoder"):
        make_refiner(folder, card)
    assert not has_encoder(SimpleNamespace(encoder={"models": 0})) and has_encoder(SimpleNamespace(encoder={"models": 1}))
    assert _no_refiner_left()


def test_rtdecode_run_publishes_and_records_the_refined_stream(encoder_model, tmp_path, capsys):
    """`rtdecode run` with outputs.refined: the rig file's keys reach the refiner, end.json has its stats, the
    recording its frames, and the process is gone after the session (the virtual rig's sender on loopback)."""
    import socket
    import threading

    from rtdecode.live.run import run_session
    from rtdecode.rig.sender import SenderConfig, run_sender
    from rtdecode.rig.twophoton import Microscope

    def free_port():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    n = model_dir.load(encoder_model)[0].neurons
    Microscope(n, seed=7, frame_shape=(128, 128)).save_rois(tmp_path / "rois")
    port = free_port()
    (tmp_path / "rig.yaml").write_text(f"""
rig: test
source: {{protocol: rtframe, address: "tcp://127.0.0.1:{port}"}}
extraction: {{two_photon: {{rois: rois, crop: [64, 64]}}}}
decoder: {{model: {encoder_model}, backends: [numpy]}}
outputs: {{publish: "tcp://127.0.0.1:{free_port()}", refined: true, refined_iterations: 2, refined_frames: 8}}
""")
    cfg = SenderConfig(n_neurons=n, seed=7, n_train=1, n_oracle=1, speed=2.0, frame_shape=(128, 128),
                       endpoint=f"tcp://127.0.0.1:{port}", max_frames=150, wait_subscriber_s=120)
    th = threading.Thread(target=run_sender, args=(cfg,), daemon=True)
    th.start()
    stats = run_session(tmp_path / "rig.yaml", record=tmp_path / "session", seconds=120)
    th.join(timeout=30)
    r = stats["refined"]
    assert stats["frames"] == 150 and stats["published"] > 0 and stats["stopped_by"] == "source"
    assert r["iterations"] == 2 and r["frames"] == 8 and r["offered"] == stats["published"]
    assert r["crashes"] == r["errors"] == 0
    a = read_session(tmp_path / "session")["arrays"]
    assert (~np.isnan(a["refined_of"])).sum() == r["published"]
    from rtdecode.cli import main

    assert main(["inspect", str(tmp_path / "session")]) == 0
    assert f"refined: {r['published']} frames" in capsys.readouterr().out
    assert _no_refiner_left()
