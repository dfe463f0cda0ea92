"""The one live-graph assembly (rtdecode.live.graph): one ring-fill rule and one decode stage for
run, demo and bench e2e; the graph checked as one chain; a start-up failure closes what was opened."""

import json

import numpy as np
import pytest

from rtdecode.decode import methods
from rtdecode.decode import model as model_dir
from rtdecode.decode.backends import BackendStage
from rtdecode.decode.ridge import random_decoder
from rtdecode.errors import ConfigError, StageError
from rtdecode.extract.stages import build_chain
from rtdecode.extract.rois import from_footprints
from rtdecode.live.graph import assemble, live_chain, load_decoder

N, BINS = 3, 4


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("graph") / "model"
    dec = random_decoder(N, BINS, (36, 64), lag_min=0, seed=1)
    model_dir.save(folder, model_dir.new_card("ridge", N, 0, BINS, (36, 64), 30.0), dec.arrays())
    return folder


def rois(shape=(32, 32)):
    pts = [np.mgrid[c - 2:c + 3, c - 2:c + 3] for c in (8, 16, 24)]
    return from_footprints([y.ravel() for y, _ in pts], [x.ravel() for _, x in pts],
                           [np.ones(25) for _ in pts], shape)


def test_the_ring_is_filled_by_the_methods_rule_and_decoding_is_a_backend_stage(model):
    dec = load_decoder(model, ("numpy",))
    card, arrays = model_dir.load(model)
    assert isinstance(dec.stage, BackendStage) and dec.backend == "numpy"
    np.testing.assert_array_equal(dec.ring.fill, methods.window_fill(arrays, card))
    with pytest.raises(ConfigError, match="decoder.backends: no backend of"):
        load_decoder(model, ("onnxruntime",))  # no exported graph: none loads
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        load_decoder(model, ("nope",))


def test_the_live_chain_is_checked_as_one_graph(model):
    dec = load_decoder(model, ("numpy",))
    extract = build_chain(None, rois(), np.ones((32, 32), np.float32))
    chain = live_chain(extract.stages, dec)
    assert chain.stage_names() == ["register", "traces", "dff", "deconv", "ring", "decode"]
    assert live_chain([], None) is None
    with pytest.raises(StageError, match=r"stage 'register' gives <f4\[32, 32\] but the next stage 'ring' takes"):
        live_chain(extract.stages[:1], dec)


class _Ingest:
    closed = False

    def close(self):
        self.closed = True


def test_a_start_up_failure_closes_what_was_opened(model, tmp_path):
    ingest = _Ingest()
    chain = live_chain(build_chain(None, rois(), np.ones((32, 32), np.float32)).stages, load_decoder(model))

    def no_publisher():
        raise ConfigError("outputs.publish: address in use")

    with pytest.raises(ConfigError, match="address in use"):
        assemble(ingest, chain, no_publisher, n_neurons=N, frame_shape=(36, 64), fps=30.0, record=tmp_path / "s")
    assert ingest.closed
    status = json.loads((tmp_path / "s" / "status.json").read_text())
    assert "could not start" in json.dumps(status)
