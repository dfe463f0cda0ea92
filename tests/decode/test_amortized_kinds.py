"""fit_pipeline trains an amortized network through its kind's registry entry (methods.AMORTIZED_KINDS:
`fit`, `prepare`), chosen by the config's `kind`, not by its type; the stand-alone network is the
non-registered methods.LEGACY_AMORTIZED, trained through the same dispatch."""

from dataclasses import asdict

import numpy as np
import pytest

from rtdecode.decode import amortized as am
from rtdecode.decode import methods
from rtdecode.decode.inverse import InverseConfig
from rtdecode.decode.pipeline import AmortizedFit, AmortizedJob, fit_pipeline
from rtdecode.errors import ConfigError


@pytest.mark.parametrize("name", list(methods.AMORTIZED_KINDS))
def test_each_kind_names_its_training(name):
    kind = methods.AMORTIZED_KINDS[name]
    cfg = methods.amortized_config(name)
    assert cfg.kind == name and methods.kind_of(cfg) is kind
    assert callable(methods.resolve(kind.fit)) and (kind.prepare is None or callable(methods.resolve(kind.prepare)))


def test_the_stand_alone_network_is_the_legacy_entry_and_an_unknown_kind_fails():
    assert methods.kind_of(am.AmortizedConfig()) is methods.LEGACY_AMORTIZED
    assert "kind" not in asdict(am.AmortizedConfig())  # its cards carry no kind: they load as v1 cards do
    with pytest.raises(ConfigError, match="unknown amortized kind None .*valid: " + ", ".join(methods.AMORTIZED_KINDS)):
        methods.kind_of(InverseConfig())


def test_fit_pipeline_dispatches_on_the_registry(tiny_trials, monkeypatch):
    seen = {}

    def fake_fit(job: AmortizedJob) -> AmortizedFit:
        seen["job"] = job
        net = am.AmortizedNet(job.trials[0][0].shape[0], job.bins, job.frame_shape, am.AmortizedConfig(hidden=8))
        net.lag_min = job.lag_min
        return AmortizedFit(net, {"fake": True}, {"extra.x": np.zeros(1, np.float32)})

    monkeypatch.setattr("rtdecode.decode.pipeline.fit_residual_kind", fake_fit)
    trials = [t[:3] for t in tiny_trials]
    dec, arrays, fields = fit_pipeline(trials[:4], trials[4:6], encoder_steps=0, inverse_trials=0, synth_movies=0,
                                       amortized_cfg=methods.amortized_config("ridge_residual"), bins=4)
    assert seen["job"].cfg.kind == "ridge_residual" and seen["job"].steps == (0, 1500)
    assert fields["training_pipeline"]["amortized"] == {"fake": True} and "extra.x" in arrays
    assert fields["amortized"]["kind"] == "ridge_residual" and dec.card.window.bins == 4


def test_the_stand_alone_network_still_trains_through_fit_pipeline(tiny_trials):
    trials = [t[:3] for t in tiny_trials]
    dec, arrays, fields = fit_pipeline(trials[:4], trials[4:6], encoder_steps=4, inverse_trials=1, synth_movies=0,
                                       amortized_steps=(2, 2), inverse_cfg=InverseConfig(iterations=2),
                                       amortized_cfg=am.AmortizedConfig(k=2, hidden=16, dropout=0.0), bins=4)
    assert isinstance(dec.net, am.AmortizedNet) and "kind" not in fields["amortized"]
    assert any(k.startswith("amortized.") for k in arrays)
