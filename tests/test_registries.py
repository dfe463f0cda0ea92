"""One registry each for source protocols, decoder methods and backends: the command line and the
rig-file check take their names from them, and an unknown name lists the valid ones. What each entry
builds is checked per name by the contract tests (tests/sources/test_protocol_contracts.py,
tests/decode/test_method_contracts.py, tests/decode/backends/test_registry.py); nothing here pins a list."""

import copy

import pytest

from rtdecode.cli_parser import build_parser
from rtdecode.decode import backends, methods
from rtdecode.errors import ConfigError, ModelError
from rtdecode.live.config import parse_config
from rtdecode.sources import protocols
from rtdecode.sources.address import parse_address, split_endpoint

BASE = {
    "source": {"protocol": "openephys", "address": "tcp://127.0.0.1:5556"},
    "extraction": {"ephys": {}},
    "decoder": {"model": "m"},
}


def _choices(argv_prefix, option):
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[argv_prefix]  # the sub-command's parser
    return next(a.choices for a in sub._actions if option in a.option_strings)


def test_cli_choices_come_from_the_registries():
    assert tuple(_choices("fit", "--method")) == methods.fit_methods()
    assert tuple(_choices("reconstruct", "--method")) == methods.reconstruct_modes()
    assert set(methods.reconstruct_modes()) == {m for n in methods.fit_methods() for m in methods.METHODS[n].modes}
    assert tuple(_choices("probe", "--protocol")) == tuple(protocols.PROTOCOLS)
    assert tuple(_choices("fit", "--amortized-kind")) == tuple(methods.AMORTIZED_KINDS)


def test_a_registered_name_is_known_everywhere(monkeypatch):
    ephys = protocols.get("openephys")
    monkeypatch.setitem(protocols.PROTOCOLS, "newproto",
                        protocols.Protocol("newproto", "test", "ephys", many_addresses=False,
                                           source_keys=("stream", "units"), ingest=ephys.ingest, probe=ephys.probe,
                                           example=ephys.example, stages=ephys.stages, inputs_key="units"))
    d = copy.deepcopy(BASE)
    d["source"].update(protocol="newproto", units=["a", "b"])
    assert parse_config(d).source.protocol == "newproto"
    d["source"]["channels"] = [0, 1]  # a key of another protocol: refused, naming the protocols that take it
    with pytest.raises(ConfigError, match="channels: only used with protocol openephys, not newproto"):
        parse_config(d)
    monkeypatch.setitem(methods.METHODS, "newmethod", methods.Method("newmethod", "x:Y", ("newmethod",),
                                                                      fit="x:fit", help="test"))
    assert "newmethod" in _choices("fit", "--method") and "newmethod" in methods.reconstruct_modes()


def test_unknown_names_fail_listing_the_valid_ones():
    with pytest.raises(ConfigError, match=f"'zmq' is not one of {protocols.valid()}$"):
        protocols.get("zmq")
    fit = ", ".join(methods.fit_methods())
    with pytest.raises(ConfigError, match=f"unknown fit method 'lasso'; valid: {fit}$"):
        methods.check_fit_method("lasso")
    with pytest.raises(ModelError, match=f"method 'lasso' unknown; this rtdecode knows: {', '.join(methods.METHODS)}$"):
        methods.decoder_class("lasso")
    with pytest.raises(ConfigError, match=f"unknown amortized kind 'cnn'; valid: {', '.join(methods.AMORTIZED_KINDS)}$"):
        methods.amortized_config("cnn")
    with pytest.raises(ConfigError, match="valid backends: " + ", ".join(backends.BACKENDS)):
        backends.check_names(["cuda"])
    d = copy.deepcopy(BASE)
    d["decoder"]["backends"] = ["numpy", "jax"]
    with pytest.raises(ConfigError, match="decoder.backends.1: 'jax' is not one of " + ", ".join(backends.BACKENDS)):
        parse_config(d)


def test_no_silent_fall_through_for_an_unhandled_name(tmp_path):
    """A model card of an unknown method and an amortized network of an unknown kind are refused with
    the valid names, never decoded as something else (a session of an unknown protocol:
    tests/offline/test_nwb_export.py)."""
    from rtdecode.decode import amortized, model
    from rtdecode.decode.card import new_card

    model.save(tmp_path / "m", new_card("lasso", 3, 0, 2, (4, 4), 30.0), {})
    with pytest.raises(ModelError, match="method 'lasso' unknown; this rtdecode knows: " + ", ".join(methods.METHODS)):
        methods.window_fill({}, model.read_card(tmp_path / "m"))
    card = new_card("amortized", 3, 0, 2, (4, 4), 30.0, amortized={"kind": "cnn"})
    with pytest.raises(ModelError, match="amortized.kind 'cnn' unknown; this rtdecode knows: "
                                         + ", ".join(methods.AMORTIZED_KINDS)):
        amortized.net_from_arrays({}, card)


@pytest.mark.parametrize("name", list(methods.AMORTIZED_KINDS))
def test_each_amortized_kind_resolves(name):
    kind = methods.AMORTIZED_KINDS[name]
    assert methods.amortized_config(name) is not None and callable(methods.resolve(kind.network))


def test_one_address_parser():
    assert split_endpoint("tcp://10.0.0.2:5556") == ("10.0.0.2", 5556)
    assert parse_address("tcp://*:5556") == ("127.0.0.1", 5556) == parse_address("5556")
    assert parse_address("rig-pc:5556") == ("rig-pc", 5556)
    for bad, needle in [("localhost:5556", "not a ZeroMQ address"), ("tcp://h:0", "port 0 is not in 1..65535")]:
        with pytest.raises(ConfigError, match=needle):
            split_endpoint(bad)
    with pytest.raises(ConfigError, match="only tcp:// addresses"):
        parse_address("ipc:///tmp/x")
    with pytest.raises(ConfigError, match="expected tcp://HOST:PORT, HOST:PORT or PORT"):
        parse_address("tcp://host")


def test_rig_profile_choices_are_the_population_profiles():
    from rtdecode.rig.population import PROFILES

    for cmd in ("simulate", "demo", "rig"):
        assert tuple(_choices(cmd, "--rig")) == tuple(PROFILES)
    assert "realistic" in PROFILES and "easy" in PROFILES
