"""The stage registry's contract, over every registered two-photon stage: it builds from its default
options, its in / out specs chain after what it takes, it warms up, processes a frame and resets; the
chain's taps come from the stages' own declarations. The ephys stages: tests/extract/test_ephys_registry.py."""

import numpy as np
import pytest

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import DEFAULT_STAGES, STAGES, build_chain, default_spec, extract_movie, parse_spec
from rtdecode.extract.stages import names
from rtdecode.extract.rois import from_footprints
from rtdecode.stage import Stage, StageOptions, check_graph

SHAPE = (48, 48)
# the default chain's stages before a stage that takes this input
PREFIX = {"frame": [], "image": ["register"], "vector": ["register", "traces"]}


def rois():
    ys, xs, ws = [], [], []
    for cy, cx in [(14, 14), (30, 34), (36, 12)]:
        y, x = np.mgrid[cy - 3: cy + 4, cx - 3: cx + 4]
        ys.append(y.ravel())
        xs.append(x.ravel())
        ws.append(np.linspace(1, 2, y.size))
    return from_footprints(ys, xs, ws, SHAPE)


def frames(n=40, seed=0):
    rng = np.random.default_rng(seed)
    base = 100 + 20 * np.sin(np.linspace(0, 3, SHAPE[0]))[:, None] * np.ones(SHAPE)
    return [(base + rng.normal(0, 5, SHAPE) + 80 * (k % 7 == 0)).astype(np.uint16) for k in range(n)]


REFERENCE = np.asarray(frames(1)[0], np.float32)


@pytest.mark.parametrize("name", names("two_photon"))
def test_every_registered_stage_keeps_the_contract(name):
    entry = STAGES[name]
    cls = entry.load()
    assert issubclass(cls, Stage) and issubclass(cls.Options, StageOptions)
    assert entry.takes in PREFIX and entry.help
    cls.Options()  # every option has a default
    spec = PREFIX[entry.takes] + [name]
    chain = build_chain(spec, rois(), REFERENCE, backend="fast", frame_dtype=np.uint16)
    check_graph(chain.stages)
    stage = chain.stages[-1]
    assert isinstance(stage, cls) and stage.history >= 0
    chain.warm_up()
    out = chain.process(frames(1)[0])
    assert out.dtype == stage.out_spec.dtype and out.shape == stage.out_spec.shape
    for tap, (get, shape, dtype) in stage.taps(chain.buffers[-1]).items():
        assert np.asarray(get()).shape == tuple(shape), tap
    stage.reset()


def test_an_unknown_stage_or_option_names_what_is_valid():
    with pytest.raises(ConfigError, match=f"unknown extraction stage 'bleach'; valid: {', '.join(names('two_photon'))}"):
        parse_spec(["register", "bleach"])
    with pytest.raises(ConfigError, match="unknown extraction stage 'bandpass'"):
        parse_spec(["bandpass", "traces"])  # an ephys stage in a two-photon chain
    with pytest.raises(ConfigError, match=r"stage 3 \(deconvolve\): method: .*options: method, lag"):
        parse_spec(["register", "traces", "dff", {"deconvolve": {"method": "cascade"}}])
    with pytest.raises(ConfigError, match="no default extraction stage has an option 'bogus'"):
        default_spec(bogus=1)


def test_a_spec_that_does_not_chain_fails_naming_both_stages():
    with pytest.raises(StageError, match="stage 'traces' gives .* but the next stage 'register' takes"):
        build_chain(["traces", "register"], rois(), REFERENCE)


def test_the_explicit_default_list_is_the_default_chain():
    movie = np.stack(frames())
    spec = [{"register": {"crop": [32, 32]}}, {"traces": {"r": 0.7}}, "dff", {"deconvolve": None}]
    a = extract_movie(build_chain(default_spec(crop=(32, 32)), rois(), REFERENCE), movie)
    b = extract_movie(build_chain(spec, rois(), REFERENCE), movie)
    assert [s.name for s in build_chain(None, rois(), REFERENCE).stages] == ["register", "traces", "dff", "deconv"]
    assert list(DEFAULT_STAGES) == ["register", "traces", "dff", "deconvolve"]
    for k in ("F", "Fneu", "dff", "activity", "shifts"):
        np.testing.assert_array_equal(a[k], b[k])


def test_taps_are_declared_by_the_stages():
    chain = build_chain(None, rois(), REFERENCE)
    taps = chain.taps()
    assert {k: (tuple(s), d) for k, (_, s, d) in taps.items()} == {
        "shifts": ((2,), "float32"), "F": ((3,), "float32"), "Fneu": ((3,), "float32"), "dff": ((3,), "float32")}
    chain.process(frames(1)[0])
    assert taps["dff"][0]() is chain.buffers[2]
    with pytest.raises(StageError, match="exposes dff"):
        extract_movie(build_chain(["register", "traces", "deconvolve"], rois(), REFERENCE), np.stack(frames(3)))


def test_oasis_and_the_neuropil_cap_are_stage_options():
    chain = build_chain(["register", {"traces": {"max_neuropil_px": 8}}, "dff",
                         {"deconvolve": {"method": "oasis", "lag": 2}}], rois(), REFERENCE)
    assert chain.stages[3].method == "oasis" and chain.stages[3].lag == 2 and chain.stages[3].history == 5
    assert np.diff(chain.stages[1].rois.neuropil.indptr).max() <= 8
