"""extraction.two_photon.stages: the rig file lists the chain; the default list is the default chain,
the old keys still set their stage's option, an unknown stage is refused naming the valid ones."""

import numpy as np
import pytest
import yaml

from rtdecode.errors import ConfigError
from rtdecode.extract import STAGES, extract_movie
from rtdecode.live.config import load_config
from rtdecode.live.run import plane_chains
from rtdecode.rig.twophoton import Microscope

SHAPE = (64, 64)


@pytest.fixture(scope="module")
def scope(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rig")
    m = Microscope(12, seed=3, frame_shape=SHAPE)
    m.save_rois(folder / "rois")
    return folder, m.render_movie(m.poisson_spikes(40, seed=3))


def rig(folder, two_photon: dict):
    path = folder / f"rig{len(list(folder.glob('rig*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump({
        "source": {"protocol": "rtframe", "address": "tcp://127.0.0.1:5555"},
        "extraction": {"two_photon": {"rois": "rois", **two_photon}}}))
    return path


def test_an_explicit_stage_list_equals_the_default_chain(scope):
    folder, movie = scope
    old = load_config(rig(folder, {"crop": [32, 32], "neuropil_r": 0.6, "tau_s": 1.0}))
    new = load_config(rig(folder, {"stages": [{"register": {"crop": [32, 32]}}, {"traces": {"r": 0.6}}, "dff",
                                              {"deconvolve": {"tau_s": 1.0}}]}))
    a, b = (extract_movie(plane_chains(c)[0], movie) for c in (old, new))
    for k in ("F", "Fneu", "dff", "activity", "shifts"):
        np.testing.assert_array_equal(a[k], b[k])
    assert plane_chains(old)[0].stages[1].r == 0.6


def test_stage_options_reach_the_chain_from_the_rig_file(scope):
    folder, _ = scope
    cfg = load_config(rig(folder, {"crop": [32, 32], "stages": [
        "register", {"traces": {"max_neuropil_px": 16}}, "dff", {"deconvolve": {"method": "oasis", "lag": 2}}]}))
    chain = plane_chains(cfg)[0]
    assert chain.stages[0].in_spec.shape == SHAPE and chain.stages[3].method == "oasis" and chain.stages[3].lag == 2
    assert np.diff(chain.stages[1].rois.neuropil.indptr).max() <= 16


@pytest.mark.parametrize("two_photon, expected", [
    ({"stages": ["register", "bleach"]},
     f"extraction.two_photon.stages: unknown extraction stage 'bleach'; valid: {', '.join(STAGES)}"),
    ({"stages": [{"deconvolve": {"lag": -1}}]}, "stage 0 (deconvolve): lag:"),
    ({"stages": ["register", "traces"], "tau_s": 1.0}, "tau_s is set but the list has no deconvolve stage"),
    ({"stages": [{"register": {"crop": [32, 32]}}], "crop": [64, 64]}, "crop and register's crop are both set"),
])
def test_a_bad_stage_list_is_a_config_error(scope, two_photon, expected):
    folder, _ = scope
    with pytest.raises(ConfigError) as exc:
        load_config(rig(folder, two_photon))
    assert expected in str(exc.value), str(exc.value)
