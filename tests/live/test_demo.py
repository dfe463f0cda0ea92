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


def test_the_movie_shows_stimulus_and_reconstruction_for_a_few_seconds(demo):
    from PIL import Image

    from rtdecode.live.demo import MOVIE_FPS, MOVIE_SECONDS

    out, s = demo
    assert s["movie"] == str(out / "demo_movie.gif")
    assert s["movie_panels"] == ["stimulus", "reconstruction"]  # a ridge model has no uncertainty
    with Image.open(out / "demo_movie.gif") as gif:
        assert gif.format == "GIF" and gif.n_frames == s["movie_frames"] == int(MOVIE_SECONDS * MOVIE_FPS)
        assert gif.info["duration"] == round(1000 / MOVIE_FPS)
        h, w = json.loads((out / "model" / "card.json").read_text())["frame_shape"]
        assert gif.size == (4 * (2 * w + 2), 4 * h + 14)  # two panels, zoom 4, a title strip


def test_the_movie_has_an_uncertainty_panel_when_the_model_has_one(tmp_path):
    import numpy as np
    from PIL import Image

    from rtdecode.live.demo import movie

    rng = np.random.default_rng(0)
    rec, stim, spread = (rng.uniform(0, 255, (100, 36, 64)) for _ in range(3))
    clip = movie(rec, stim, tmp_path / "m.gif", spread=spread, seconds=2, fps=15)
    assert clip["panels"] == ["stimulus", "reconstruction", "uncertainty"] and clip["frames"] == 30
    with Image.open(tmp_path / "m.gif") as gif:
        assert gif.n_frames == 30 and gif.size == (4 * (3 * 64 + 4), 4 * 36 + 14)
    assert movie(rec[:20], stim[:20], tmp_path / "short.gif")["frames"] == 0  # shorter than the skipped frames
