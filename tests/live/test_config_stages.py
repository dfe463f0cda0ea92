"""extraction.two_photon.stages: the rig file lists the chain; the default list is the default chain,
the old keys still set their stage's option, an unknown stage is refused naming the valid ones."""

import numpy as np
import pytest
import yaml

from rtdecode.errors import ConfigError
from rtdecode.extract import extract_movie, stages
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
     f"extraction.two_photon.stages: unknown extraction stage 'bleach'; valid: {', '.join(stages.names('two_photon'))}"),
    ({"stages": [{"deconvolve": {"lag": -1}}]}, "stage 0 (deconvolve): lag:"),
    ({"stages": ["register", "traces"], "tau_s": 1.0}, "tau_s is set but the list has no deconvolve stage"),
    ({"stages": [{"register": {"crop": [32, 32]}}], "crop": [64, 64]}, "crop and register's crop are both set"),
])
def test_a_bad_stage_list_is_a_config_error(scope, two_photon, expected):
    folder, _ = scope
    with pytest.raises(ConfigError) as exc:
        load_config(rig(folder, two_photon))
    assert expected in str(exc.value), str(exc.value)


# ---------------------------------------------------------------- extraction.ephys.stages
def _stage_state(stages):
    """What each built ephys stage does: name, specs and settings."""
    out = []
    for s in stages:
        d = {k: v for k, v in vars(s).items() if isinstance(v, (int, float, str, tuple, type(None)))}
        out.append((s.name, s.in_spec, s.out_spec, sorted(d.items()), sorted(getattr(s, "_kw", {}).items())))
    return out


@pytest.mark.parametrize("path", sorted(__import__("pathlib").Path("configs").glob("*.yaml")))
def test_the_ephys_rig_files_build_the_chain_they_always_did(path):
    from rtdecode.extract.ephys_stages import BinCounts, ephys_spec, build_ephys_stages
    from rtdecode.live.ephys import SPIKES_PER_EVENT_BLOCK, ephys_stages

    cfg = load_config(path)
    ep = cfg.extraction.ephys
    if ep is None:
        pytest.skip("a two-photon rig")
    got = ephys_stages(cfg, 16)
    if cfg.source.protocol == "eventbroadcaster":
        want = [BinCounts(16, SPIKES_PER_EVENT_BLOCK, name="bin_units")]
    else:  # the keywords rtdecode.live.ephys passed before the stages were registered
        want = build_ephys_stages(16, ep.block_samples, spec=ephys_spec(
            band=ep.band_hz, reference=ep.reference, k=ep.threshold, threshold_uv=ep.threshold_uv))
    assert _stage_state(got) == _stage_state(want)


def ephys_rig(folder, ephys: dict, protocol="openephys"):
    path = folder / f"ephys{len(list(folder.glob('ephys*.yaml')))}.yaml"
    source = {"protocol": protocol, "address": "tcp://127.0.0.1:5556"}
    source.update({"units": "Probe:1-4"} if protocol == "eventbroadcaster" else {"channels": "0-3"})
    path.write_text(yaml.safe_dump({"source": source, "extraction": {"ephys": ephys}}))
    return path


def test_ephys_stage_options_reach_the_chain_from_the_rig_file(tmp_path):
    from rtdecode.live.ephys import ephys_stages

    cfg = load_config(ephys_rig(tmp_path, {"threshold": 5.0, "stages": [
        {"bandpass": {"band": [300, 3000], "order": 2}}, {"detect": {"refractory_ms": 2.0}}, "bin"]}))
    st = ephys_stages(cfg, 4)
    assert [s.name for s in st] == ["bandpass", "detect", "bin"]
    assert st[0].band == (300.0, 3000.0) and st[0].order == 2
    assert st[1]._kw["k"] == 5.0 and st[1]._kw["refractory_ms"] == 2.0
    cfg = load_config(ephys_rig(tmp_path, {"reference": None}))
    assert [s.name for s in ephys_stages(cfg, 4)] == ["bandpass", "detect", "bin"]
    cfg = load_config(ephys_rig(tmp_path, {"reference": "median", "band_hz": None}))
    st = ephys_stages(cfg, 4)
    assert st[0].band is None and st[1].method == "median"
    with pytest.raises(ConfigError, match="the source gives events but the first stage, bandpass, takes samples"):
        ephys_stages(load_config(ephys_rig(tmp_path, {"stages": ["bandpass", "detect", "bin"]}, "eventbroadcaster")), 4)


@pytest.mark.parametrize("ephys, expected", [
    ({"stages": ["bandpass", "sort"]}, "extraction.ephys.stages: unknown extraction stage 'sort'; valid: bandpass,"),
    ({"stages": [{"detect": {"k": 0}}]}, "stage 0 (detect): k:"),
    ({"stages": ["bandpass", "detect", "bin"], "reference": "median"},
     "reference is set but the list has no common_reference stage"),
    ({"stages": ["bandpass", "common_reference", "detect", "bin"], "reference": None},
     "reference and common_reference's method are both set"),
    ({"stages": [{"detect": {"k": 4}}, "bin"], "threshold": 5.0}, "threshold and detect's k are both set"),
])
def test_a_bad_ephys_stage_list_is_a_config_error(tmp_path, ephys, expected):
    with pytest.raises(ConfigError) as exc:
        load_config(ephys_rig(tmp_path, ephys))
    assert expected in str(exc.value), str(exc.value)
