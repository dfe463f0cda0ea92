"""One registry each for source protocols, decoder methods and backends: the command line and the
rig-file check take their names from them, and an unknown name lists the valid ones."""

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
    assert tuple(_choices("fit", "--method")) == methods.fit_methods() == ("ridge", "inverse", "amortized")
    assert tuple(_choices("reconstruct", "--method")) == methods.reconstruct_modes() == (
        "ridge", "inverse", "amortized", "warm")
    assert tuple(_choices("probe", "--protocol")) == tuple(protocols.PROTOCOLS)


def test_a_registered_name_is_known_everywhere(monkeypatch):
    monkeypatch.setitem(protocols.PROTOCOLS, "newproto",
                        protocols.Protocol("newproto", "test", many_addresses=False, extraction="ephys"))
    d = copy.deepcopy(BASE)
    d["source"]["protocol"] = "newproto"
    assert parse_config(d).source.protocol == "newproto"
    monkeypatch.setitem(methods.METHODS, "newmethod", methods.Method("newmethod", "x:Y", ("newmethod",),
                                                                      encoder=False, fit=True, help="test"))
    assert "newmethod" in _choices("fit", "--method") and "newmethod" in methods.reconstruct_modes()


def test_unknown_names_fail_listing_the_valid_ones():
    with pytest.raises(ConfigError, match="'zmq' is not one of rtframe, openephys, eventbroadcaster"):
        protocols.get("zmq")
    with pytest.raises(ConfigError, match="unknown fit method 'lasso'; valid: ridge, inverse, amortized"):
        methods.check_fit_method("lasso")
    with pytest.raises(ModelError, match="method 'lasso' unknown; this rtdecode knows: ridge, inverse, amortized"):
        methods.decoder_class("lasso")
    with pytest.raises(ConfigError, match="valid backends: tensorrt, onnxruntime, torch, numpy"):
        backends.check_names(["cuda"])
    d = copy.deepcopy(BASE)
    d["decoder"]["backends"] = ["numpy", "jax"]
    with pytest.raises(ConfigError, match="decoder.backends.1: 'jax' is not one of " + ", ".join(backends.BACKENDS)):
        parse_config(d)


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
