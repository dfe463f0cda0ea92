"""Rig configuration files: every shipped file loads; mistakes fail naming the key and what is allowed."""

import copy

import pytest
import yaml

from rtdecode.decode.backends import BACKENDS
from rtdecode.errors import ConfigError
from rtdecode.live.config import load_config, parse_config
from rtdecode.sources import protocols
from tests import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))

BASE = {
    "source": {"protocol": "openephys", "address": "tcp://127.0.0.1:5556", "heartbeat": {"port": 5557}},
    "extraction": {"ephys": {"band_hz": [300, 6000], "threshold": 4.5, "bin_ms": 33.3}},
    "decoder": {"model": "m", "backends": ["onnxruntime", "torch"]},
    "triggers": [],
}


def test_config_files_shipped():
    names = {p.name for p in CONFIGS}
    assert {"scanimage_2p.yaml", "openephys_ephys.yaml", "virtual_rig_2p.yaml", "virtual_rig_ephys.yaml"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_file_loads(path):
    cfg = load_config(path)
    assert cfg.source.protocol in ("rtframe", "openephys", "eventbroadcaster")
    if cfg.decoder is None:  # a calibration block: extraction and recording only
        assert path.name.endswith("_calibration.yaml") and not cfg.triggers
    else:
        assert cfg.decoder.model.is_absolute()  # relative to the file's folder
    assert cfg.extraction.two_photon is None or all(p.is_absolute() for p in cfg.extraction.two_photon.rois_per_plane)
    assert cfg.outputs.publish.startswith("tcp://127.0.0.1:")  # loopback unless the file says otherwise


def test_openephys_file_sets_ports_explicitly():
    cfg = load_config(CONFIGS[0].parent / "openephys_ephys.yaml")
    assert cfg.source.address == ["tcp://192.168.1.40:5556"] and cfg.source.heartbeat_port == 5557
    assert cfg.source.event_broadcaster.endswith(":5558") and cfg.triggers[0].address.endswith(":5559")


def test_defaults():
    cfg = parse_config(BASE)
    assert cfg.outputs.publish == "tcp://127.0.0.1:5560" and cfg.outputs.record is None
    assert cfg.source.heartbeat.interval_s == 2.0
    d = copy.deepcopy(BASE)
    del d["source"]["heartbeat"]
    assert parse_config(d).source.heartbeat_port == 5557  # data port + 1, as the plugin


def _bad(path: str, value, delete=False):
    d = copy.deepcopy(BASE)
    *head, last = path.split(".")
    node = d
    for k in head:
        node = node[int(k)] if isinstance(node, list) else node.setdefault(k, {})
    if delete:
        del node[last]
    else:
        node[last] = value
    with pytest.raises(ConfigError) as exc:
        parse_config(d, "rig.yaml")
    return str(exc.value)


@pytest.mark.parametrize("path, value, expected", [
    ("source.protocol", "zmq", f"source.protocol: 'zmq' is not one of {protocols.valid()}"),
    ("source.hearbeat", {"port": 5557}, "source.hearbeat: unknown key; allowed here: protocol, address, heartbeat"),
    ("colour", "red", "colour: unknown key; allowed here: rig, source, extraction, decoder, outputs, triggers"),
    ("source.heartbeat.interval_s", 7.0, "source.heartbeat.interval_s: 7.0 is out of range; allowed: (0, 5)"),
    ("source.heartbeat.port", 70000, "source.heartbeat.port: 70000 is out of range; allowed: [1, 65535]"),
    ("source.address", "localhost:5556", "source.address: 'localhost:5556' is not a ZeroMQ address"),
    ("extraction.ephys.bin_ms", 0.1, "extraction.ephys.bin_ms: 0.1 is out of range; allowed: [1, 1000]"),
    ("extraction.ephys.band_hz", [6000, 300], "extraction.ephys.band_hz: low edge 6000.0 must be below"),
    ("extraction.ephys.reference", "car", "extraction.ephys.reference: 'car' is not one of mean, median"),
    ("decoder.backends", ["tensorrt", "cuda"], f"decoder.backends.1: 'cuda' is not one of {', '.join(BACKENDS)}"),
    ("decoder.backends", ["torch", "torch"], "decoder.backends: ['torch', 'torch'] lists a backend twice"),
    ("decoder.model", None, "decoder.model: required key is missing"),
    ("outputs.publish", "tcp://127.0.0.1:99999", "outputs.publish: 'tcp://127.0.0.1:99999': port 99999 is not in 1..65535"),
    ("triggers", [{"name": "t", "kind": "gpio", "address": "x"}], "triggers.0.kind: 'gpio' is not one of zmq, network_events, serial"),
    ("triggers", [{"name": "t", "kind": "network_events", "address": "tcp://127.0.0.1:5559"}],
     "triggers.0.line: network_events triggers need the TTL line"),
    ("triggers", [{"name": "t", "kind": "network_events", "address": "tcp://127.0.0.1:5556", "line": 1}],
     "triggers.0.address: port 5556 on 127.0.0.1 is already used by source.address"),
    ("source.event_broadcaster", "tcp://127.0.0.1:5557", "source.event_broadcaster: port 5557 on 127.0.0.1 is already used by source.heartbeat.port"),
])
def test_bad_values_name_the_key(path, value, expected):
    msg = _bad(path, value, delete=value is None)
    assert msg.startswith("rig.yaml: ") and expected in msg, msg


def test_protocol_specific_keys_and_sections():
    d = copy.deepcopy(BASE)
    d["source"]["protocol"] = "rtframe"
    with pytest.raises(ConfigError, match=r"source.heartbeat: only used with protocol openephys, not rtframe"):
        parse_config(d)
    del d["source"]["heartbeat"]
    with pytest.raises(ConfigError, match=r"extraction: protocol rtframe needs extraction.two_photon"):
        parse_config(d)
    d["extraction"] = {"two_photon": {"rois": "r", "crop": [4, 256]}}
    with pytest.raises(ConfigError, match=r"extraction.two_photon.crop.0: 4 is out of range; allowed: \[8, 4096\]"):
        parse_config(d)


def test_load_config_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read the config file"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("source: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+, column \d+ not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
    (tmp_path / "ok.yaml").write_text(yaml.safe_dump({**BASE, "outputs": {"record": "s/live.h5"}}))
    cfg = load_config(tmp_path / "ok.yaml")
    assert cfg.outputs.record == tmp_path / "s" / "live.h5" and cfg.decoder.model == tmp_path / "m"


@pytest.mark.parametrize("rule, message", [
    ({"kind": "similarity", "threshold": 0.5}, "triggers.0.rule.target: a .npy image is needed"),
    ({"kind": "luminance", "threshold": 300}, "triggers.0.rule.threshold: 300 is out of range"),
    ({"kind": "luminance", "threshold": 10, "region": [5, 2, 0, 10]}, "triggers.0.rule.region: expected y0 < y1"),
    ({"kind": "brightness", "threshold": 10}, "triggers.0.rule.kind: 'brightness' is not one of"),
])
def test_trigger_rules_are_checked(rule, message):
    data = copy.deepcopy(BASE)
    data["triggers"] = [{"name": "t", "kind": "zmq", "address": "tcp://127.0.0.1:5570", "rule": rule}]
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_config(data)


def test_openephys_file_has_a_complete_trigger_rule():
    rule = load_config(CONFIGS[0].parent / "openephys_ephys.yaml").triggers[0].rule
    assert rule.kind == "luminance" and rule.consecutive == 3 and rule.region == (9, 27, 17, 47)


TTL = {"address": "tcp://127.0.0.1:5558", "line": 2}


def test_flip_times_validate():
    assert parse_config(BASE).stimulus.flip_times == "sender"
    cfg = parse_config({**BASE, "stimulus": {"flip_times": "ttl", "ttl": {**TTL, "edges": "both", "tolerance_ms": 4}}})
    assert (cfg.stimulus.ttl.line, cfg.stimulus.ttl.edges, cfg.stimulus.ttl.tolerance_ms) == (2, "both", 4.0)
    assert cfg.stimulus.ttl.max_latency_ms == 100.0


@pytest.mark.parametrize("stimulus, expected", [
    ({"flip_times": "photodiode"}, "stimulus.flip_times: 'photodiode' is not one of sender, ttl"),
    ({"flip_times": "ttl"}, "stimulus.ttl: flip_times ttl needs ttl: {address: tcp://HOST:PORT, line: N}"),
    ({"ttl": TTL}, "stimulus.ttl: only used with flip_times: ttl, not sender"),
    ({"flip_times": "ttl", "ttl": {**TTL, "line": 0}}, "stimulus.ttl.line: 0 is out of range; allowed: [1, 256]"),
    ({"flip_times": "ttl", "ttl": {**TTL, "edges": "falling"}}, "stimulus.ttl.edges: 'falling' is not one of rising, both"),
    ({"flip_times": "ttl", "ttl": {**TTL, "address": "5558"}}, "stimulus.ttl.address: '5558' is not a ZeroMQ address"),
    ({"flip_times": "ttl", "ttl": {**TTL, "tolerance_ms": 0}}, "stimulus.ttl.tolerance_ms: 0 is out of range; allowed: (0, 100]"),
    ({"flip_times": "ttl", "ttl": {"line": 1}}, "stimulus.ttl.address: required key is missing"),
    ({"flip_times": "ttl", "ttl": {**TTL, "channel": 1}},
     "stimulus.ttl.channel: unknown key; allowed here: address, line, edges, tolerance_ms, max_latency_ms"),
    ({"flips": "ttl"}, "stimulus.flips: unknown key; allowed here: flip_times, ttl"),
])
def test_bad_flip_time_settings_name_the_key(stimulus, expected):
    with pytest.raises(ConfigError) as exc:
        parse_config({**BASE, "stimulus": stimulus}, "rig.yaml")
    assert str(exc.value).startswith("rig.yaml: ") and expected in str(exc.value), str(exc.value)
