"""The virtual probe (rtdecode.rig.probe): units on a Neuropixels-like probe, voltage, and its stream in
the Open Ephys plugins' wire formats over loopback."""

import time

import numpy as np
import pytest
import zmq

from rtdecode.errors import ConfigError
from rtdecode.rig import VirtualRig
from rtdecode.rig.probe import (NOISE_UV, WAVE_SAMPLES, Probe, ProbeStreamer, default_units, make_session)
from rtdecode.sources import wire
from rtdecode.sources.openephys import event_broadcaster as eb
from rtdecode.sources.openephys import zmq_interface_wire as ziw


def test_default_unit_density_and_bad_sizes():
    assert default_units(384) == 307 and default_units(64) == 51
    with pytest.raises(ConfigError):
        Probe(0)
    with pytest.raises(ConfigError):
        Probe(385)
    with pytest.raises(ConfigError):
        Probe(64, n_units=0)


def test_noise_level_and_a_spike_on_its_peak_channel_and_neighbours():
    p = Probe(64, seed=1)
    quiet = p.block(0, 4096, np.zeros(0, np.int64), np.zeros(0, np.int64))
    assert quiet.shape == (64, 4096) and quiet.dtype == np.float32
    assert 0.8 * NOISE_UV < float(quiet.std()) < 1.2 * NOISE_UV
    p2 = Probe(64, seed=1, noise_uv=0.0)
    u = int(np.argmax(p2.amplitude))
    x = p2.block(0, 1000, np.array([100], np.int64), np.array([u], np.int64))
    trough = x.min(1)
    assert int(np.argmin(trough)) == p2.peak[u]
    assert trough[p2.peak[u]] == pytest.approx(-p2.amplitude[u], rel=0.05)
    assert (trough < -0.1 * p2.amplitude[u]).sum() >= 3  # seen on neighbours
    assert (x[:, : 100] == 0).all()  # nothing before the waveform


def test_a_waveform_runs_over_the_block_edge_into_the_next_block():
    p = Probe(16, n_units=3, seed=2, noise_uv=0.0)
    whole = p.block(0, 200, np.array([180], np.int64), np.array([0], np.int64))
    p.reset()
    a = p.block(0, 190, np.array([180], np.int64), np.array([0], np.int64))
    b = p.block(190, 10, np.zeros(0, np.int64), np.zeros(0, np.int64))
    np.testing.assert_allclose(np.concatenate([a, b], 1), whole, atol=1e-5)


def test_the_session_is_seeded_and_follows_the_stimulus_frames():
    p = Probe(64, seed=0)
    rig = VirtualRig(p.N, 0, n_train=2, n_oracle=1)
    s1 = make_session(p, rig, rig.trials("train"), max_frames=120)
    s2 = make_session(Probe(64, seed=0), VirtualRig(p.N, 0, n_train=2, n_oracle=1), rig.trials("train"), max_frames=120)
    np.testing.assert_array_equal(s1.samples, s2.samples)
    assert len(s1.frames) == 120 and s1.n_samples == 120_000
    assert s1.samples.size > 0 and np.all(np.diff(s1.samples) >= 0) and s1.units.max() < p.N
    assert s1.samples.max() < s1.n_samples
    with pytest.raises(ConfigError):
        make_session(Probe(16, n_units=5), rig, [0])


def test_the_stream_is_the_plugins_wire_format_on_loopback():
    ctx = zmq.Context.instance()
    probe = Probe(8, n_units=6, seed=3)
    rig = VirtualRig(probe.N, 3, n_train=2, n_oracle=1)
    session = make_session(probe, rig, rig.trials("train"), max_frames=30)  # 1 s
    streamer = ProbeStreamer(probe, session, data_port=0, broadcaster_port=0, stim_endpoint="tcp://127.0.0.1:*",
                             speed=4.0, block_size=1000, wait_subscriber_s=5.0, stim_clock_offset_s=2.0, context=ctx)
    subs = []
    for ep, topic in ((f"tcp://127.0.0.1:{streamer.data_port}", b""),
                      (f"tcp://127.0.0.1:{streamer.broadcaster_port}", b""), (streamer.stim_endpoint, b"stim")):
        s = ctx.socket(zmq.SUB)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.SUBSCRIBE, topic)
        s.connect(ep)
        subs.append(s)
    try:
        streamer.start(replay=True)
        stats = streamer.wait(30)
        time.sleep(0.2)
        got = {0: [], 1: [], 2: []}
        for i, s in enumerate(subs):
            while s.poll(200):
                got[i].append(s.recv_multipart())
    finally:
        for s in subs:
            s.close()
        streamer.close()
    assert stats["blocks"] == 30 and stats["data"] == 30 * 8 and stats["stim"] == 30
    parsed = [ziw.parse_message(m) for m in got[0]]
    assert [n for n, _, _ in parsed] == list(range(1, 241))  # message_num +1 per message
    first = [d for _, kind, d in parsed if kind == "data"][:8]
    assert [d["channel_num"] for d in first] == list(range(8)) and all(d["sample_num"] == 0 for d in first)
    assert all(d["samples"].size == 1000 and d["sample_rate"] == 30000.0 for d in first)
    spikes = [eb.parse_broadcast(m) for m in got[1]]
    assert len(spikes) == stats["spike"] > 0
    assert all(sp.electrode == "Probe" and 1 <= sp.sorted_id <= 6 for sp in spikes)
    np.testing.assert_array_equal(sorted(sp.sample_number for sp in spikes),
                                  np.sort(session.samples) + WAVE_SAMPLES // 3)
    stims = [wire.decode(m) for m in got[2]]
    assert [m.header["frame"] for m in stims] == list(range(30))
    assert stims[0].array.shape == (36, 64) and stims[0].array.dtype == np.uint8
    assert stims[0].t > time.time()  # its own clock, 2 s ahead
