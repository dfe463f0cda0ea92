"""Ephys calibration blocks (no decoder): the rig file lists the inputs (source.channels / source.units,
or their range shorthands), and a rig file without them is refused with a one-line reason."""

import pytest

from rtdecode.errors import ConfigError
from rtdecode.live.config import parse_config
from rtdecode.live.run import ephys_inputs


def openephys(**source):
    return {"source": {"protocol": "openephys", "address": "tcp://127.0.0.1:5580", **source},
            "extraction": {"ephys": {}}, "outputs": {"publish": "tcp://127.0.0.1:5584"}}


def sorted_units(**source):
    return {"source": {"protocol": "eventbroadcaster", "address": "tcp://127.0.0.1:5582", "group_by": "unit",
                       **source}, "extraction": {"ephys": {}}}


def test_a_channel_range_expands_in_order_and_sets_the_calibration_inputs():
    cfg = parse_config(openephys(channels="0-63"))
    assert cfg.source.channels == list(range(64)) and cfg.decoder is None
    assert ephys_inputs(cfg) == 64
    assert parse_config(openephys(channels=[3, 1, 2])).source.channels == [3, 1, 2]  # a list passes unchanged


def test_a_unit_range_names_sorted_ids_of_one_electrode():
    cfg = parse_config(sorted_units(units="Probe:1-5"))
    assert cfg.source.units == [f"Probe:{i}" for i in range(1, 6)]
    assert ephys_inputs(cfg) == 5
    assert parse_config(sorted_units(units="Probe A:2-3")).source.units == ["Probe A:2", "Probe A:3"]


@pytest.mark.parametrize("value", ["63-0", "a-b", "0-", "0-99999999", "1,2,3", ""])
def test_bad_channel_ranges_are_refused(value):
    with pytest.raises(ConfigError, match="channels"):
        parse_config(openephys(channels=value))


@pytest.mark.parametrize("value", ["Probe", ":1-3", "Probe:3-1", "Probe:x-y"])
def test_bad_unit_ranges_are_refused(value):
    with pytest.raises(ConfigError, match="units"):
        parse_config(sorted_units(units=value))


def test_a_calibration_block_without_its_inputs_listed_is_refused():
    with pytest.raises(ConfigError, match="source.channels"):
        parse_config(openephys())
    with pytest.raises(ConfigError, match="source.units"):
        parse_config(sorted_units())
    with pytest.raises(ConfigError, match="triggers"):
        parse_config({**openephys(channels="0-3"), "triggers": [
            {"name": "t", "kind": "zmq", "address": "tcp://127.0.0.1:5585", "rule": {"kind": "luminance",
                                                                                     "threshold": 100}}]})
