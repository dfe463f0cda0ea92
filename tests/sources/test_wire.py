import json

import numpy as np
import pytest

from rtdecode.sources import wire
from rtdecode.errors import WireError


def test_round_trip_keeps_array_and_fields(rng):
    arr = rng.integers(0, 4096, (512, 512)).astype(np.uint16)
    frames = wire.encode("frame", 7, 12.5, arr, frameNumberAcq=8, channel=1, plane=1)
    assert frames[0] == b"frame"
    header = json.loads(frames[1])
    assert header["v"] == 1 and header["seq"] == 7 and header["dtype"] == "<u2" and header["shape"] == [512, 512]
    assert len(frames[2]) == arr.nbytes
    msg = wire.decode(frames)
    np.testing.assert_array_equal(msg.array, arr)
    assert msg.topic == "frame" and msg.seq == 7 and msg.t == 12.5 and msg.header["frameNumberAcq"] == 8


def test_big_endian_input_goes_out_little_endian():
    arr = np.arange(6, dtype=">i2").reshape(2, 3)
    msg = wire.decode(wire.encode("activity", 0, 0.0, arr))
    assert msg.header["dtype"] == "<i2"
    np.testing.assert_array_equal(msg.array, arr)


def _frames(**over):
    header = {"v": 1, "seq": 0, "t": 1.0, "dtype": "<f4", "shape": [2, 3]}
    header.update(over.pop("header", {}))
    return [over.get("topic", b"activity"), over.get("raw_header", json.dumps(header).encode()),
            over.get("payload", np.zeros((2, 3), np.float32).tobytes())]


@pytest.mark.parametrize("frames, reason", [
    (_frames(raw_header=b"{not json"), "not UTF-8 JSON"),
    (_frames(topic=b"nonsense"), "unknown topic"),
    (_frames(header={"dtype": "|O"}), "dtype"),
    (_frames(header={"dtype": "<f4", "shape": [2, 4]}), "payload is 24 bytes"),
    (_frames(payload=b"\0" * 23), "payload is 23 bytes"),
    (_frames(payload=b"\0" * 25), "payload is 25 bytes"),
    (_frames(header={"v": 2}), "version"),
    (_frames(header={"seq": -1}), "seq"),
    (_frames(header={"t": "now"}), "'t'"),
    (_frames(header={"shape": [2, -3]}), "shape"),
    (_frames(topic=b"frame"), "frameNumberAcq"),
    (_frames()[:2], "expected 3 frames"),
])
def test_malformed_messages_are_rejected_with_a_reason(frames, reason):
    with pytest.raises(WireError, match=reason.replace("(", r"\(")):
        wire.decode(frames)


def test_encode_refuses_unknown_topic_and_object_arrays():
    with pytest.raises(WireError, match="unknown topic"):
        wire.encode("bogus", 0, 0.0, np.zeros(3))
    with pytest.raises(WireError, match="cannot be sent"):
        wire.encode("activity", 0, 0.0, np.array([object()]))


def test_gap_counter_counts_missing_messages():
    g = wire.GapCounter()
    for s in [0, 1, 2, 5, 6, 10]:
        g.see(s)
    assert g.missing == 2 + 3
    g.see(0)
    assert g.restarts == 1 and g.missing == 5


def test_gap_counter_tells_a_second_publisher_from_a_restart_and_a_gap():
    g = wire.GapCounter()
    assert [g.see(s) for s in (0, 1, 2, 0, 1, 2, 3)] == [0, 0, 0, 0, 0, 0, 0]  # a restart, followed
    assert g.restarts == 1 and g.missing == 0 and g.others == 0
    g = wire.GapCounter()
    assert [g.see(s) for s in (0, 1, 5, 6)] == [0, 0, 3, 0]  # a gap
    assert g.missing == 3 and g.others == 0
    g = wire.GapCounter()  # two counters interleaved: the first is followed, the second's jump uncounted
    out = [g.see(s) for s in (0, 500, 1, 501, 2, 502, 3)]
    assert out == [0, 499, 0, wire.OTHER, 0, wire.OTHER, 0]
    assert g.missing == 0 and g.restarts == 0 and g.swaps == 1 and g.others == 2
    g = wire.GapCounter()  # a second counter that stops is forgotten
    for s in (0, 1, 0):
        g.see(s)
    for s in range(1, wire.OTHER_TTL + 5):
        g.see(s)
    assert g.other is None


def test_encode_without_copy_is_a_view_that_decodes_the_same():
    arr = np.arange(512 * 512, dtype=np.uint16).reshape(512, 512)
    fields = dict(frameNumberAcq=4, frameTimestamp=0.1, channel=1, plane=1)
    copied = wire.encode("frame", 3, 1.5, arr, **fields)
    viewed = wire.encode("frame", 3, 1.5, arr, copy=False, **fields)
    assert isinstance(viewed[2], memoryview) and viewed[2].obj is not None
    assert copied[:2] == viewed[:2] and bytes(viewed[2]) == copied[2]
    a, b = wire.decode(copied), wire.decode(viewed)
    np.testing.assert_array_equal(a.array, b.array)
    assert b.header["frameNumberAcq"] == 4 and "copy" not in b.header
