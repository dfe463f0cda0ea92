"""FlipAligner: stim messages (which frame) paired with TTL edges (when), on simulated time; and the
TTL input on a loopback Event Broadcaster publisher."""

import time

import numpy as np
import pytest
import zmq

from rtdecode.sources.flips import FlipAligner, TtlFlips
from rtdecode.sources.openephys.event_broadcaster import encode_spike, encode_ttl

P = 1 / 60  # stimulus frame period


def _run(aligner, stims, edges, transport=0.001, step=0.002):
    """Feed stims [(t, id)] and edges [t] as they would arrive (`transport` after their time), calling
    resolve every `step`; returns everything resolved, in order."""
    events = [(t + transport, 0, (t, i)) for t, i in stims] + [(t + transport, 1, t) for t in edges]
    events.sort(key=lambda e: e[0])
    out = []
    now = min(e[0] for e in events)
    end = max(e[0] for e in events) + 1.0
    k = 0
    while now < end:
        while k < len(events) and events[k][0] <= now:
            _, kind, v = events[k]
            if kind == 0:
                aligner.add_stim(*v)
            else:
                aligner.add_edge(v)
            k += 1
        out += aligner.resolve(now)
        now += step
    return out


def test_pairs_each_stim_with_its_edge_even_when_the_latency_exceeds_a_frame():
    rng = np.random.default_rng(0)
    latency = 0.035  # two stimulus frames
    stims = [(10 + k * P, k) for k in range(120)]
    edges = [t + latency + rng.normal(0, 0.0005) for t, _ in stims]
    al = FlipAligner(started=0.0)
    out = _run(al, stims, edges)
    assert [i for _, i, _ in out] == list(range(120))
    assert all(m for _, _, m in out)
    np.testing.assert_allclose([t for t, _, _ in out], edges)
    s = al.stats()
    assert s["flips_matched"] == 120 and s["flips_unmatched"] == 0 and s["edges_unmatched"] == 0
    assert abs(s["display_latency_ms"]["p50"] - 35.0) < 0.5 and s["display_latency_ms"]["n"] == 120


def test_missing_and_extra_edges_are_counted_and_the_rest_still_pair():
    rng = np.random.default_rng(1)
    latency = 0.012
    stims = [(10 + k * P, k) for k in range(100)]
    missing = {20, 21, 57}
    edges = [t + latency + rng.normal(0, 0.0003) for t, k in stims if k not in missing]
    extra = [10 + 40 * P + P / 2 + latency, 10 + 80 * P + P / 2 + latency]  # glitches between two flips
    al = FlipAligner(started=0.0)
    out = _run(al, stims, sorted(edges + extra))
    assert [i for _, i, _ in out] == list(range(100))
    by_id = {i: (t, m) for t, i, m in out}
    for k in missing:  # resolved at its own (clock-corrected sender) time
        assert by_id[k] == (stims[k][0], False)
    assert all(by_id[k][1] for k in range(100) if k not in missing)
    s = al.stats()
    assert s["flips_matched"] == 97 and s["flips_unmatched"] == 3 and s["edges_unmatched"] == 2


def test_an_edge_outside_the_tolerance_is_not_taken():
    stims = [(10 + k * P, k) for k in range(30)]
    edges = [t + 0.010 for t, _ in stims]
    edges[15] += 0.012  # later than the 8 ms tolerance allows
    al = FlipAligner(tolerance_s=0.008, started=0.0)
    out = _run(al, stims, edges)
    by_id = {i: (t, m) for t, i, m in out}
    assert by_id[15] == (stims[15][0], False)
    assert al.flips_matched == 29 and al.flips_unmatched == 1 and al.edges_unmatched == 1


def test_joining_mid_stream_never_pairs_with_an_earlier_stims_edge():
    # the first stim seen has edges of earlier (unseen) stims shortly before it: the latency (35 ms,
    # two frames) cannot be told from one frame's, so nothing pairs until a pause in the stimulus
    latency = 0.035
    first = [(10 + k * P, k) for k in range(5, 40)]
    edges = [10 + k * P + latency for k in range(40)]
    second = [(12 + k * P, 100 + k) for k in range(20)]  # after a 1 s pause
    edges += [t + latency for t, _ in second]
    al = FlipAligner(started=0.0)
    out = _run(al, first + second, edges)
    by_id = {i: m for _, i, m in out}
    assert not any(by_id[k] for k in range(5, 40))
    assert all(by_id[k] for k in range(100, 120))
    assert abs(al.latency - latency) < 1e-6


def test_memory_is_bounded():
    al = FlipAligner(keep=64, started=0.0)
    for k in range(5000):
        al.add_stim(10 + k * P, k)
    assert len(al.stims) == 64 and al.flips_unmatched == 5000 - 64
    assert [i for _, i, _ in al.resolve(0.0)] == list(range(5000 - 64))
    for k in range(5000):
        al.add_edge(1000 + k * P)
    assert len(al.edges) == 64 and al.edges_unmatched == 5000 - 64


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="tolerance_s"):
        FlipAligner(tolerance_s=0.0)


def test_ttl_input_on_loopback_maps_sample_numbers_to_wall_time_and_counts_bad_messages():
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    al = FlipAligner(started=0.0)
    flips = TtlFlips(f"tcp://127.0.0.1:{port}", 2, al, context=ctx)
    try:
        time.sleep(0.3)  # the subscription
        rate, t0 = 30000.0, time.time() - 100.0  # the sample clock started 100 s ago
        sent = []
        for k in range(20):
            now = time.time()
            n = int(round((now - t0) * rate))
            sent.append(n / rate + t0)
            pub.send_multipart(encode_ttl("s", 100, rate, "TTL", n, 2, True))
            pub.send_multipart(encode_ttl("s", 100, rate, "TTL", n + 30, 2, False))  # falling: ignored
            pub.send_multipart(encode_ttl("s", 100, rate, "TTL", n, 3, True))  # another line: ignored
            pub.send_multipart(encode_spike("s", 100, "e", rate, n, 0, [1.0]))  # a spike: ignored
            pub.send_multipart([b"\x00\x00", b"{not json"])  # counted, never raised
            time.sleep(0.005)
            flips.poll()
        deadline = time.monotonic() + 5
        while len(al.edges) < 20 and time.monotonic() < deadline:
            flips.poll()
            time.sleep(0.005)
        assert len(al.edges) == 20
        # on this PC's wall clock, to within the transport and the loaded machine's scheduling
        assert np.max(np.abs(np.asarray(al.edges) - np.asarray(sent))) < 0.05
        s = flips.stats()
        assert s["line"] == 3 and s["rejected_by_reason"].get("not_json") == 20
        assert s["ignored"] == {"falling": 20, "other_line": 20, "spike": 20}
        assert s["clock"]["n"] == 40 and abs(s["clock"]["offset_ms"] / 1e3 - t0) < 0.05  # when sample 0 was
    finally:
        flips.close()
        pub.close()
