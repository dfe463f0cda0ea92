"""Per-pixel uncertainty, live (rtdecode.live.uncertainty): an image-prior model's fold-ensemble spread is
published as 'uncertainty' beside every decoded frame (same index, fields and `t`), equals the offline
`uncertainty_trial` for the same window, is recorded, is scored against the stimulus in the stats, and
is absent for a ridge model; the rig file can turn it off."""

import time

import numpy as np
import pytest
import zmq

from rtdecode import metrics
from rtdecode.decode import image_prior as ip
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import random_decoder
from rtdecode.live.config import Outputs
from rtdecode.live.graph import assemble, live_chain, load_decoder
from rtdecode.live.uncertainty import FOLD_KEYS, LiveUncertainty, SpreadCalibration
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.sources import wire


@pytest.fixture(scope="module")
def image_model(tiny_dataset, tmp_path_factory):
    """A seeded tiny image-prior model (ridge + 5 fold ridges; no encoder, no U-Net steps: the folds are
    what is tested)."""
    import torch

    from rtdecode.offline.fit import fit_dataset

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("unc") / "model"
    fit_dataset(tiny_dataset, out, method="amortized", progress=False, encoder_steps=0, amortized_steps=(0, 0),
                seed=0)
    return out


@pytest.fixture(scope="module")
def ridge_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("unc_ridge") / "model"
    dec = random_decoder(200, 4, (36, 64), lag_min=0, seed=1)
    model_dir.save(folder, model_dir.new_card("ridge", 200, 0, 4, (36, 64), 30.0), dec.arrays())
    return folder


class Script:
    """An ingest that hands out prepared messages: per frame a stim message (with its image) just
    before the frame (its activity vector as payload), then the source's end."""

    def __init__(self, responses, movie, trial=0):
        self.msgs = []
        t0 = time.time()
        for k in range(responses.shape[1]):
            t = t0 + k / 30.0
            stim = wire.decode(wire.encode("stim", 2 * k, t - 0.002, movie[k].astype(np.uint8), trial=trial, frame=k))
            frame = wire.decode(wire.encode("frame", 2 * k + 1, t, np.ascontiguousarray(responses[:, k], np.float32),
                                            frameNumberAcq=k + 1, channel=1, plane=1))
            for m in (stim, frame):
                m.local_t = m.t
            self.msgs += [stim, frame]
        self.msgs.append(wire.Message("stats", {"v": 1, "seq": len(self.msgs), "t": t0, "end": True}))

    def receive(self, timeout_ms=50):
        if not self.msgs:
            return None
        m = self.msgs.pop(0)
        m.received = m.acquired = time.perf_counter()
        return m

    def counts(self):
        return {}

    def close(self):
        pass


def _drain(sub):
    got = []
    while sub.poll(200):
        got.append(wire.decode(sub.recv_multipart()))
    return got


def _run(model, trial, tmp_path, record=True, uncertainty=True):
    dec = load_decoder(model, ("numpy",))
    pub = Publisher()
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.RCVHWM, 100000)
    for topic in (b"decoded", b"uncertainty"):
        sub.setsockopt(zmq.SUBSCRIBE, topic)
    sub.connect(pub.endpoint)
    time.sleep(0.3)
    responses, movie = trial
    graph = assemble(Script(responses, movie), live_chain([], dec), lambda: pub, n_neurons=dec.card.neurons,
                     frame_shape=dec.card.frame_shape, fps=30.0, record=tmp_path / "s" if record else None,
                     uncertainty=dec.uncertainty if uncertainty else None)
    session = graph.session(lag_min=dec.card.window.lag_min, collect=True, max_age_s=None)
    try:
        res = session.run(seconds=60)
        stats = session.stats(final=True)
        msgs = _drain(sub)
    finally:
        graph.close(stats)
        sub.close()
    return dec, res, stats, msgs


def _trial(tiny_dataset, i=0):
    from rtdecode.offline.dataset import Dataset

    ds = Dataset(tiny_dataset)
    tr = ds.load(ds.require("oracle")[i])
    return tr.responses.astype(np.float32), tr.video


def test_fold_keys_are_the_models():
    assert FOLD_KEYS == ip.FOLD_KEYS


def test_the_stream_is_published_beside_the_decoded_frame_and_equals_the_offline_spread(image_model, tiny_dataset,
                                                                                       tmp_path):
    from rtdecode import decode

    trial = _trial(tiny_dataset)
    dec, res, stats, msgs = _run(image_model, trial, tmp_path)
    assert dec.uncertainty is not None and dec.uncertainty.k == 5
    decoded = [m for m in msgs if m.topic == "decoded"]
    spread = [m for m in msgs if m.topic == "uncertainty"]
    H, W = dec.card.frame_shape
    assert len(decoded) == res.published > 0 and len(spread) == len(decoded)
    for d, u in zip(decoded, spread):  # the same frame: index, target, times
        assert u.array.shape == (H, W) and u.array.dtype == np.float32
        for key in ("frameNumberAcq", "trial", "frame", "target_t", "target_local_t", "t"):
            assert u.header[key] == d.header[key], key
    assert np.all(np.isfinite(np.stack([u.array for u in spread]))) and all((u.array >= 0).all() for u in spread)
    # equal to the offline uncertainty of the same window (rtdecode.decode.image_prior.spread, torch)
    offline = decode.load(image_model)[1].uncertainty_trial(trial[0])
    frames = [u.header["frame"] for u in spread]
    assert frames == list(range(len(spread)))  # every target labelled, in order
    live = np.stack([u.array for u in spread])
    np.testing.assert_allclose(live, offline[: len(live)], rtol=1e-4, atol=1e-3)
    assert stats["uncertainty"]["published"] == len(spread) and stats["uncertainty"]["errors"] == 0
    assert stats["uncertainty"]["ms"]["p50"] is not None


def test_the_stats_report_its_calibration_as_the_offline_metric(image_model, tiny_dataset, tmp_path):
    dec, res, stats, _ = _run(image_model, _trial(tiny_dataset, 1), tmp_path, record=False)
    frames = sorted(f for (_, f) in res.uncertainty)
    s = np.stack([res.uncertainty[(0, f)] for f in frames])
    r = np.stack([res.decoded[(0, f)] for f in frames])
    v = np.stack([res.stimuli[(0, f)] for f in frames]).astype(np.float32)
    want = metrics.uncertainty_calibration([(s, r, v)], None)
    cal = stats["uncertainty"]["calibration"]
    assert cal["frames"] == len(frames) - metrics.SKIP_FRAMES > 0
    assert cal["corr_spread_abs_error"] == pytest.approx(want["corr_spread_abs_error"], abs=1e-6)
    assert cal["abs_error_over_spread"] == pytest.approx(want["abs_error_over_spread"], rel=1e-6)
    # every scored frame is in the sample here (fewer than its cap): the same bins
    for got, exp in zip(cal["bins"], want["bins"]):
        assert got == pytest.approx(exp, rel=1e-5)


def test_it_is_recorded_and_inspect_reports_it(image_model, tiny_dataset, tmp_path, capsys):
    dec, res, stats, msgs = _run(image_model, _trial(tiny_dataset), tmp_path)
    s = read_session(tmp_path / "s")
    a = s["arrays"]
    assert a["uncertainty"].shape == (res.frames,) + tuple(dec.card.frame_shape)
    valid = a["decoded_valid"]
    assert valid.sum() == res.published and np.isnan(a["uncertainty"][~valid]).all()
    published = {m.header["frameNumberAcq"]: m.array for m in msgs if m.topic == "uncertainty"}
    for number, row in zip(a["number"][valid], a["uncertainty"][valid]):
        np.testing.assert_array_equal(row, published[int(number)])
    summary = summarize(s)
    assert summary["uncertainty_frames"] == res.published
    assert summary["uncertainty_calibration"]["corr_spread_abs_error"] == \
        stats["uncertainty"]["calibration"]["corr_spread_abs_error"]
    from rtdecode.cli import main

    assert main(["inspect", str(tmp_path / "s")]) == 0
    assert f"uncertainty: {res.published} frames" in capsys.readouterr().out


def test_a_ridge_model_publishes_none(ridge_model, tmp_path):
    rng = np.random.default_rng(0)
    trial = (rng.exponential(1.0, (200, 40)).astype(np.float32), rng.uniform(0, 255, (40, 36, 64)))
    dec, res, stats, msgs = _run(ridge_model, trial, tmp_path, uncertainty=True)
    assert dec.uncertainty is None and res.published > 0
    assert [m for m in msgs if m.topic == "uncertainty"] == [] and "uncertainty" not in stats
    assert "uncertainty" not in read_session(tmp_path / "s")["arrays"]


def test_the_rig_file_turns_it_off(image_model, tiny_dataset, tmp_path):
    assert Outputs().uncertainty is True and Outputs(uncertainty=False).uncertainty is False
    dec, res, stats, msgs = _run(image_model, _trial(tiny_dataset), tmp_path, uncertainty=False)
    assert res.published > 0 and [m for m in msgs if m.topic == "uncertainty"] == [] and "uncertainty" not in stats


def test_live_and_offline_arrays_are_checked(image_model):
    card, arrays = model_dir.load(image_model)
    unc = LiveUncertainty.from_model(card, arrays)
    window = np.random.default_rng(0).exponential(1.0, card.in_shape).astype(np.float32)
    a = unc.compute(window).copy()
    from rtdecode import decode

    net = decode.load(image_model)[1]
    np.testing.assert_allclose(a, ip.spread(net.net, *net.folds, window[None])[0], rtol=1e-4, atol=1e-3)
    bad = dict(arrays)
    bad[FOLD_KEYS[1]] = arrays[FOLD_KEYS[1]][:, :, :-1]
    from rtdecode.errors import ModelError

    with pytest.raises(ModelError, match="fit the model again"):
        LiveUncertainty.from_model(card, bad)
    del bad[FOLD_KEYS[1]]
    assert LiveUncertainty.from_model(card, bad) is None  # no ensemble: no uncertainty, no error


def test_the_calibration_sample_is_bounded_and_uniform():
    rng = np.random.default_rng(1)
    cal = SpreadCalibration(skip=0, sample=20)
    for k in range(200):
        s = rng.uniform(0, 5, (4, 6))
        cal.add(s, rng.normal(0, 1, (4, 6)) * s, np.zeros((4, 6)), frame=k)
    out = cal.summary(bins=True)
    assert out["frames"] == 200 and out["sample_frames"] == 20 and len(out["bins"]) == 5
    assert out["corr_spread_abs_error"] > 0.3  # the error scales with the spread here
    assert SpreadCalibration().add(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)), frame=3) is False
