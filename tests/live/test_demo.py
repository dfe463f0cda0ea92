"""End to end over real loopback sockets: virtual rig sender process -> ingest -> extraction ->
ring -> ridge decoder -> publish, with a small population."""

import json

import pytest

from rtdecode.live.demo import run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    # The easy rig: this checks the live path end to end in seconds (200 neurons, 5 calibration
    # movies), where the realistic rig (the demo's default) decodes nothing measurable; what the
    # default demo decodes is measured in benchmarks/results/demo_realistic.json.
    summary = run_demo(out, seconds=10, n_neurons=200, n_train=5, seed=1, speed=4.0,
                       frame_shape=(256, 256), progress=False, rig="easy")
    return out, summary


def test_every_frame_arrives_and_is_decoded(demo):
    out, s = demo
    assert s["sender_ended"] and s["frames"] == 300
    assert s["dropped"] == 0 and s["rejected"] == 0 and s["errors"] == 0
    bins = json.loads((out / "model" / "card.json").read_text())["window"]["bins"]
    assert s["published"] == s["frames"] - (bins - 1)  # the first frames wait for a full window


def test_summary_contract_and_picture(demo):
    out, s = demo
    written = json.loads((out / "summary.json").read_text())
    for key in ("pixel_corr", "frames", "dropped"):
        assert written[key] == s[key]
    lat = written["latency_ms"]
    assert 0 < lat["p50"] <= lat["p99"]
    assert (out / "stimulus_vs_reconstruction.png").stat().st_size > 1000


def test_live_reconstruction_resembles_the_held_out_movie(demo):
    _, s = demo
    assert s["trials_scored"] == 1 and s["rig"] == "easy"
    assert s["pixel_corr"] > 0.15
