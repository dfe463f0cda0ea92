"""Property-based fuzzing: every message decoder returns a value or raises its protocol error
(a WireError with one of the fixed reasons), for any bytes and for near-valid messages; the rig-file
loader returns a config or raises ConfigError. Bounded examples here; `-m slow` runs the long fuzz."""

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtdecode.errors import ConfigError, WireError
from rtdecode.sources import safejson, wire
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface as zi
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.rejects import REASONS

FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=20000, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON values a hostile sender might put in any field
scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


def _dumps(obj) -> bytes:
    return json.dumps(obj, allow_nan=True).encode()


def _check(decode, frames):
    try:
        decode(frames)
    except WireError as exc:
        assert exc.reason in REASONS, exc.reason
        assert len(str(exc)) < 2000  # messages stay small whatever the sender sent


# ------------------------------------------------------------------ rtframe

def _rtframe_near_valid(topic, over, payload):
    header = {"v": 1, "seq": 0, "t": 1.0, "dtype": "<f4", "shape": [2], "frameNumberAcq": 0, "channel": 0,
              "plane": 0, "frame": 0, "trial": 0}
    header.update(over)
    return [topic, _dumps(header), payload]


rtframe_messages = st.one_of(
    st.lists(st.binary(max_size=64), max_size=4),
    st.builds(_rtframe_near_valid, st.sampled_from([t.encode() for t in wire.TOPICS] + [b"x", b"\xff"]),
              st.dictionaries(st.sampled_from(["v", "seq", "t", "dtype", "shape", "frameNumberAcq", "trial", "frame",
                                               "end", "frames"]), values, max_size=4),
              st.binary(max_size=16)),
)


def _fuzz_rtframe(frames):
    _check(wire.decode, frames)


@FAST
@given(rtframe_messages)
def test_rtframe_decoder_survives_anything(frames):
    _fuzz_rtframe(frames)


@pytest.mark.slow
@LONG
@given(rtframe_messages)
def test_rtframe_decoder_survives_anything_long(frames):
    _fuzz_rtframe(frames)


@FAST
@given(st.integers(0, 8), st.lists(st.integers(0, 2**70), min_size=0, max_size=70))
def test_rtframe_shapes_are_checked_before_use(_, shape):
    frames = [b"frame", _dumps({"v": 1, "seq": 0, "t": 0.0, "dtype": "<f4", "shape": shape, "frameNumberAcq": 0,
                                "channel": 0, "plane": 0}), b"\0" * 8]
    try:
        msg = wire.decode(frames)
    except WireError as exc:
        assert exc.reason in ("shape", "too_large", "payload")
    else:
        assert msg.array.nbytes == 8


# ------------------------------------------------------------------ Open Ephys ZMQ Interface

def _zi_near_valid(env, kind, content, payload, extra):
    header = {"message_num": 1, "type": kind, "timestamp": 0,
              "content": {"stream": "s", "channel_num": 0, "num_samples": 2, "sample_num": 0, "sample_rate": 30000.0,
                          "type": 3, "source_node": 100},
              "spike": {"stream": "s", "source_node": 1, "electrode": "e", "sample_num": 0, "num_channels": 1,
                        "num_samples": 2, "sorted_id": 0, "threshold": [1.0]}}
    header["content"].update(content)
    header["spike"].update(content)
    header.update(extra)
    return [env, _dumps(header), payload]


zi_messages = st.one_of(
    st.lists(st.binary(max_size=64), max_size=4),
    st.builds(_zi_near_valid, st.sampled_from([ziw.DATA_ENVELOPE, ziw.EVENT_ENVELOPE, b"DATA", b""]),
              st.sampled_from(["data", "event", "spike", "other", None]),
              st.dictionaries(st.sampled_from(["stream", "channel_num", "num_samples", "sample_num", "sample_rate",
                                               "type", "source_node", "sorted_id", "threshold", "num_channels",
                                               "electrode"]), values, max_size=3),
              st.sampled_from([b"", b"\0" * 8, b"\0" * 10, b"\0" * 12]),
              st.dictionaries(st.sampled_from(["message_num", "timestamp", "data_size"]), values, max_size=2)),
)


_CLIENT = []


def _client():
    """One real client (its SUB connected to a port nobody binds), shared by the examples: its
    reassembly state carries over from one example to the next, as on a long session."""
    if not _CLIENT:
        _CLIENT.append(zi.ZmqInterfaceClient("127.0.0.1", 9, heartbeat_port=11))
    return _CLIENT[0]


def teardown_module():
    for client in _CLIENT:
        client.close()
    _CLIENT.clear()


def _fuzz_zi(messages):
    client = _client()
    out = []
    for frames in messages:
        _check(ziw.parse_message, frames)
        client.handle(frames, out)  # never raises
    client.flush()
    assert set(client.rejected) <= set(REASONS)
    assert len(client.streams) <= zi.MAX_STREAMS


@FAST
@given(st.lists(zi_messages, max_size=6))
def test_zmq_interface_decoder_and_client_survive_anything(messages):
    _fuzz_zi(messages)


@pytest.mark.slow
@LONG
@given(st.lists(zi_messages, max_size=6))
def test_zmq_interface_decoder_and_client_survive_anything_long(messages):
    _fuzz_zi(messages)


# ------------------------------------------------------------------ Event Broadcaster

def _eb_near_valid(etype, over):
    obj = {"event_type": "spike" if etype == 1 else "ttl", "stream": "s", "source_node": 1, "sample_rate": 30000.0,
           "channel_name": "c", "sample_number": 5, "line": 0, "state": True, "electrode": "e", "num_channels": 1,
           "sorted_id": 0, "amp1": 1.0}
    obj.update(over)
    return [int(etype).to_bytes(2, "little"), _dumps(obj)]


eb_messages = st.one_of(
    st.lists(st.binary(max_size=64), max_size=3),
    st.builds(_eb_near_valid, st.sampled_from([0, 1, 2]),
              st.dictionaries(st.sampled_from(["event_type", "source_node", "sample_rate", "sample_number", "line",
                                               "state", "num_channels", "sorted_id", "amp1", "stream"]), values,
                              max_size=3)),
)


@FAST
@given(eb_messages)
def test_event_broadcaster_decoder_survives_anything(frames):
    _check(eb.parse_broadcast, frames)


@pytest.mark.slow
@LONG
@given(eb_messages)
def test_event_broadcaster_decoder_survives_anything_long(frames):
    _check(eb.parse_broadcast, frames)


# ------------------------------------------------------------------ JSON guard

@FAST
@given(st.binary(max_size=200) | st.text(alphabet="[]{}\"\\,:0a ", max_size=200).map(str.encode))
def test_safe_json_raises_only_wire_errors(raw):
    try:
        safejson.loads(raw, 100, 4, "x")
    except WireError as exc:
        assert exc.reason in REASONS


@FAST
@given(st.integers(1, 12))
def test_depth_is_counted_outside_strings(d):
    raw = ("[" * d + "]" * d).encode()
    assert safejson.depth(raw) == d
    assert safejson.depth(b'{"a": "[[[[[[[[[[[[[["}') == 1


# ------------------------------------------------------------------ rig files

yaml_texts = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(str.encode),
    st.lists(st.sampled_from(["source:", "  protocol: rtframe", "  address: tcp://127.0.0.1:5", "a: &a [1, 2]",
                              "b: [*a, *a]", "- x", "extraction: {}", "decoder: {model: m}", "[[[", "{", "'", ": ",
                              "freshness: latest", "max_age_ms: -1", "\t", "!!python/object:os.system ls"]),
             max_size=10).map(lambda ls: "\n".join(ls).encode()),
)


def _fuzz_rig(tmp_path, raw):
    p = tmp_path / "rig.yaml"
    p.write_bytes(raw)
    try:
        from rtdecode.live.config import load_config

        load_config(p)
    except ConfigError as exc:
        assert "\n" not in str(exc).split(":", 1)[0]


@FAST
@given(raw=yaml_texts)
def test_rig_file_loader_raises_only_config_errors(tmp_path_factory, raw):
    _fuzz_rig(tmp_path_factory.mktemp("rig"), raw)


@pytest.mark.slow
@LONG
@given(raw=yaml_texts)
def test_rig_file_loader_raises_only_config_errors_long(tmp_path_factory, raw):
    _fuzz_rig(tmp_path_factory.mktemp("rig"), raw)


def test_numbers_are_finite_and_in_range():
    for bad in (float("nan"), float("inf"), 10**400, True, "1"):
        with pytest.raises(WireError):
            safejson.number({"x": bad}, "x", "w")
    assert safejson.number({"x": 3}, "x", "w") == 3.0 and not math.isnan(safejson.number({"x": 0.5}, "x", "w"))
    assert np.isfinite(safejson.number({"x": 1e300}, "x", "w"))
