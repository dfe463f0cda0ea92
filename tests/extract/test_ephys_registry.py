"""The stage registry's contract over every registered ephys stage: it builds from its default
options on what it takes, its in / out specs chain, it warms up, processes a block and resets; the
default spec is the chain `build_ephys_stages` always built (same counts)."""

import numpy as np
import pytest

from rtdecode.errors import ConfigError
from rtdecode.extract import stages as registry
from rtdecode.extract.ephys_stages import (
    EphysContext,
    SampleChain,
    build_ephys_stages,
    ephys_spec,
    pack_events,
)
from rtdecode.stage import Chain, Stage, StageOptions, check_graph

FS, C, B = 30000.0, 6, 256


def _signal(T=3 * 30000, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 30, (T, C))
    for t, c in rng.integers(100, T - 100, (300, 2)):
        x[t:t + 20, c % C] -= 400 * np.hanning(20)
    return x.astype(np.float32)


@pytest.mark.parametrize("name", registry.names("ephys"))
def test_every_registered_ephys_stage_keeps_the_contract(name):
    entry = registry.STAGES[name]
    cls = entry.load()
    assert issubclass(cls, Stage) and issubclass(cls.Options, StageOptions) and entry.help
    assert entry.takes in registry.TAKES["ephys"] and entry.modality == "ephys"
    cls.Options()  # every option has a default
    stages = build_ephys_stages(C, B, spec=[name], takes=entry.takes)
    check_graph(stages)
    stage = stages[0]
    assert isinstance(stage, cls) and stage.name and stage.history >= 0
    assert stage.from_options(EphysContext(C, B, entry.takes), None, cls.Options()).in_spec == stage.in_spec
    chain = SampleChain(stages) if entry.takes == "samples" else Chain(stages)
    chain.warm_up()
    if entry.takes == "samples":
        chain.start(FS, 0)
        out = chain.process(_signal(T=B - 10))  # a block shorter than the capacity
    else:
        ev = stage.in_spec.empty()
        pack_events(np.arange(5, dtype=np.int64), np.array([0, 1, 1, C - 1, 2], np.int64), ev)
        out = chain.process(ev)
        assert out.tolist() == [1, 2, 1, 0, 0, 1]
    assert out.dtype == stage.out_spec.dtype and out.shape[1:] == stage.out_spec.shape[1:]
    assert stage.taps(chain.buffers[-1]) == {}
    stage.reset()


def test_the_default_spec_is_the_old_chain():
    spec = [{"bandpass": {"band": [300, 6000]}}, "common_reference", {"detect": {"k": 4.5}}, "bin"]
    x = _signal()
    counts = []
    for stages in (build_ephys_stages(C, B), build_ephys_stages(C, B, spec=spec),
                   build_ephys_stages(C, B, spec=None, band=(300.0, 6000.0), reference="mean", k=4.5)):
        chain = SampleChain(stages)
        chain.start(FS, 0)
        for a in range(0, x.shape[0], B):
            chain.process(x[a:a + B])
        counts.append(stages[-1].counts.copy())
        assert chain.stage_names() == list(registry.DEFAULT_EPHYS_STAGES)
    assert counts[0].sum() > 50
    np.testing.assert_array_equal(counts[0], counts[1])
    np.testing.assert_array_equal(counts[0], counts[2])
    assert [s.name for s in build_ephys_stages(C, B, reference=None, binned=False)] == ["bandpass", "detect"]
    assert ephys_spec()[0] == {"bandpass": {"band": (300.0, 6000.0), "order": 3}}


def test_a_bad_ephys_spec_names_what_is_valid():
    with pytest.raises(ConfigError, match=f"unknown extraction stage 'register'; valid: {', '.join(registry.names('ephys'))}"):
        build_ephys_stages(C, B, spec=["register"])
    with pytest.raises(ConfigError, match=r"stage 1 \(detect\): k: .*options: k, threshold_uv, noise_s, refractory_ms"):
        build_ephys_stages(C, B, spec=["bandpass", {"detect": {"k": -1}}, "bin"])
    with pytest.raises(ConfigError, match="the source gives events but the first stage, bandpass, takes samples"):
        build_ephys_stages(C, B, spec=None, takes="events")
    with pytest.raises(ConfigError, match="not both"):
        build_ephys_stages(C, B, spec=["bin"], k=3.0)
