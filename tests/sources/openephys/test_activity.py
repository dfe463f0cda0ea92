"""The ephys live path: Open Ephys emulator (real recording) -> source -> extraction stages -> `rtdecode run`."""

import logging
import socket
import threading
import time

import numpy as np
import pytest
import zmq
from tests.sources.openephys.helpers import need_recording, wait_subscribed, xpub

from rtdecode.sources import wire
from rtdecode.live.config import parse_config
from rtdecode.decode import model as model_dir
from rtdecode.decode.ridge import RidgeDecoder, temporal_basis
from rtdecode.cli import main
from rtdecode.errors import ConfigError, StageError
from rtdecode.extract.ephys import bin_counts
from rtdecode.extract.ephys_stages import CommonReference, SampleChain, build_ephys_stages, events
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.bins import BinGrid
from rtdecode.sources.openephys.emulator import Emulator
from rtdecode.sources.openephys.recording import load_recording
from rtdecode.outputs.session_reader import read_session, summarize
from rtdecode.live import run as run_mod
from rtdecode.live.run import run_session

BINS, BIN_MS, BLOCK, SHAPE = 4, 33.3, 1024, (6, 8)
ELECTRODES = [f"Stereotrode {i}" for i in range(1, 9)]
EPHYS_STAGES = ["bandpass", "common_reference", "detect", "bin"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(folder, n):
    rng = np.random.default_rng(0)
    px = SHAPE[0] * SHAPE[1]
    dec = RidgeDecoder(np.zeros(n, np.float32), np.ones(n, np.float32), temporal_basis(BINS, 2),
                       rng.normal(size=(n * 2, px)).astype(np.float32), np.full(px, 127.5, np.float32), SHAPE, 0)
    model_dir.save(folder, model_dir.new_card("ridge", n, 0, BINS, SHAPE, 30.0), dec.arrays())


def _config(tmp, source, n=16):
    _model(tmp / f"model{n}", n)
    path = tmp / f"rig{n}_{abs(hash(source)) % 10**6}.yaml"
    path.write_text(f"""
rig: oe-test
source: {source}
extraction: {{ephys: {{bin_ms: {BIN_MS}}}}}
decoder: {{model: model{n}, backends: [numpy]}}
outputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}
""")
    return path


@pytest.fixture(scope="module")
def rec():
    return load_recording(need_recording())


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


class _DroppingSocket:
    """Wraps the emulator's data socket: loses chosen DATA messages, can slip in a malformed one."""

    def __init__(self, sock, drop=(), junk_at=None):
        self.sock, self.drop, self.junk_at, self.n = sock, set(drop), junk_at, 0

    def send_multipart(self, frames):
        if frames[0] == ziw.DATA_ENVELOPE:
            self.n += 1
            if self.n == self.junk_at:
                self.sock.send_multipart([ziw.DATA_ENVELOPE, b"{not json", b""])
            if self.n in self.drop:
                return
        self.sock.send_multipart(frames)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def _offline(cont, grid, n_bins):
    """The same stages offline over the same samples in the same blocks, binned on the same edges."""
    x = cont.microvolts()  # channels x samples, as the emulator sends them
    chain = SampleChain(build_ephys_stages(x.shape[0], BLOCK, in_dtype=x.dtype, binned=False))
    chain.start(cont.sample_rate, int(cont.sample_numbers[0]))
    counts = np.zeros((n_bins, x.shape[0]), np.int64)
    edges = grid.edges(0, n_bins - 1)
    for b0 in range(0, x.shape[1], BLOCK):
        ev_t, ev_c = events(chain.process(np.ascontiguousarray(x[:, b0:b0 + BLOCK].T)))
        bin_counts(ev_t, ev_c, edges, counts)
    return counts


def _run_zi(tmp, rec, ctx, drop=(), junk_at=None, stim=0):
    emu = Emulator(rec, data_port=0, broadcaster_port=None, speed=0, block_size=BLOCK,
                   wait_subscriber_s=30, context=ctx)
    emu.data_sock = _DroppingSocket(emu.data_sock, drop, junk_at)
    src = f'{{protocol: openephys, address: "tcp://127.0.0.1:{emu.data_port}", idle_end_s: 1.0'
    stim_thread = None
    if stim:
        pub, stim_port = xpub(ctx)
        src += f', stim_address: "tcp://127.0.0.1:{stim_port}"'

        def send_stim():
            wait_subscribed(pub, 30)
            for i in range(stim):
                pub.send_multipart(wire.encode("stim", i, time.time(), np.zeros((2, 2), np.uint8), frame=i, trial=0))

        stim_thread = threading.Thread(target=send_stim, daemon=True)
        stim_thread.start()
    cfg = _config(tmp, src + "}")
    emu.start()
    try:
        stats = run_session(cfg, record=tmp / "session", seconds=45)
        emu.wait(10)
    finally:
        emu.close()
        if stim_thread is not None:
            stim_thread.join(5)
            pub.close(linger=0)
    return stats, read_session(tmp / "session")


def test_zmq_interface_bins_equal_offline_chain(tmp_path, rec, ctx):
    cont = rec.continuous[0]
    stats, sess = _run_zi(tmp_path, rec, ctx, stim=5)
    n_samples = cont.data.shape[0]
    grid = BinGrid(int(cont.sample_numbers[0]), BIN_MS * 1e-3 * cont.sample_rate)
    n_bins = grid.index(int(cont.sample_numbers[-1])) + 1
    # one frame per bin, bins = duration / bin_ms within 1, all decoded but the ring's fill-up
    assert abs(stats["frames"] - n_samples / cont.sample_rate / (BIN_MS * 1e-3)) <= 1
    assert stats["frames"] == n_bins and stats["published"] == n_bins - (BINS - 1)
    assert stats["dropped"] == 0 and stats["rejected"] == 0 and stats["errors"] == 0
    assert stats["received"]["stim"] == 5 and stats["received"]["stats"] == 1
    assert stats["openephys"]["heartbeats_sent"] >= 1
    a = sess["arrays"]
    assert a["number"].tolist() == list(range(n_bins)) and summarize(sess)["gaps"] == 0
    # binned crossings equal the chain run offline over the same data, bin by bin
    expected = _offline(cont, grid, n_bins)
    assert a["activity"].sum() > 100  # the recording has spikes; the first second only learns the noise
    np.testing.assert_array_equal(a["activity"].astype(np.int64), expected)
    assert stats["crossings"] == int(expected.sum())
    # bin times: the sender's clock (the emulator stamps blocks with its time.time() when sent)
    assert np.all(np.abs(a["t"] - time.time()) < 120)
    # every ephys stage timed per block (blocks are cut at bin edges: at least one per bin), by name,
    # then the ring and the decoder per bin
    st = stats["stages_ms"]
    assert list(st) == EPHYS_STAGES + ["ring", "decode"]
    for name in EPHYS_STAGES:
        assert st[name]["n"] >= n_bins and 0 < st[name]["p50"] <= st[name]["p99"] <= st[name]["max"], name
    assert st["ring"]["n"] == n_bins


def test_zmq_interface_lost_message_is_dropped_bins(tmp_path, rec, ctx):
    cont = rec.continuous[0]
    n_ch = cont.data.shape[1]
    block = 40
    lost = block * n_ch + 4  # one channel's message of block 40 (DATA messages counted from 1)
    stats, sess = _run_zi(tmp_path, rec, ctx, drop=[lost], junk_at=5)
    grid = BinGrid(int(cont.sample_numbers[0]), BIN_MS * 1e-3 * cont.sample_rate)
    n_bins = grid.index(int(cont.sample_numbers[-1])) + 1
    s0 = int(cont.sample_numbers[0]) + block * BLOCK
    gone = list(range(grid.index(s0), grid.index(s0 + BLOCK - 1) + 1))  # bins holding a lost sample
    assert stats["rejected"] == 1 and stats["openephys"]["missing_messages"] == 1
    assert stats["dropped"] == len(gone) >= 1
    number = sess["arrays"]["number"]
    assert stats["frames"] == n_bins - len(gone) and summarize(sess)["gaps"] == len(gone)
    assert sorted(set(range(n_bins)) - set(number.tolist())) == gone
    # the bins before the gap are untouched
    expected = _offline(cont, grid, n_bins)
    before = number < gone[0]
    np.testing.assert_array_equal(sess["arrays"]["activity"][before].astype(np.int64), expected[:gone[0]])


def test_event_broadcaster_sorted_spikes(tmp_path, rec, ctx):
    emu = Emulator(rec, data_port=0, broadcaster_port=0, speed=0, block_size=BLOCK, wait_subscriber_s=30,
                   context=ctx)
    zi_sub = ctx.socket(zmq.SUB)  # the emulator waits for a ZMQ Interface subscriber first
    zi_sub.setsockopt(zmq.SUBSCRIBE, b"")
    zi_sub.connect(f"tcp://127.0.0.1:{emu.data_port}")
    units = ", ".join(f'"{e}"' for e in ELECTRODES)
    cfg = _config(tmp_path, f'{{protocol: eventbroadcaster, address: "tcp://127.0.0.1:{emu.broadcaster_port}", '
                            f'idle_end_s: 1.0, group_by: electrode, units: [{units}]}}', n=8)
    emu.start()
    try:
        stats = run_session(cfg, record=tmp_path / "session", seconds=45)
        emu.wait(10)
    finally:
        emu.close()
        zi_sub.close(linger=0)
    sess = read_session(tmp_path / "session")
    a = sess["arrays"]
    sps = {s.electrode: s for s in rec.spikes}
    first = min(int(x.sample_numbers.min()) for x in rec.spikes + [t for t in rec.ttl if t.sample_numbers.size])
    grid = BinGrid(first, BIN_MS * 1e-3 * rec.spikes[0].sample_rate)
    last = max(int(x.sample_numbers.max()) for x in rec.spikes + [t for t in rec.ttl if t.sample_numbers.size])
    n_bins = grid.index(last) + 1
    expected = np.zeros((n_bins, 8), np.int64)
    for i, e in enumerate(ELECTRODES):
        for s in sps[e].sample_numbers:
            expected[grid.index(int(s)), i] += 1
    assert stats["dropped"] == 0 and stats["late_spikes"] == 0 and stats["rejected"] == 0
    assert stats["spikes"] == sum(s.sample_numbers.size for s in rec.spikes)
    # frame numbers consecutive; extra empty bins after the last event may come from the local clock
    assert a["number"].tolist() == list(range(a["number"].size)) and a["number"].size >= n_bins
    np.testing.assert_array_equal(a["activity"][:n_bins].astype(np.int64), expected)
    assert a["activity"][n_bins:].sum() == 0
    assert stats["published"] == stats["frames"] - (BINS - 1)
    st = stats["stages_ms"]
    assert list(st) == ["bin_units", "ring", "decode"] and st["bin_units"]["n"] >= stats["frames"]
    assert 0 < st["bin_units"]["p50"] <= st["bin_units"]["p99"]


def test_rtdecode_run_prints_the_latency_of_every_ephys_stage(tmp_path, rec, ctx, capsys):
    emu = Emulator(rec, data_port=0, broadcaster_port=None, speed=0, block_size=BLOCK, wait_subscriber_s=30,
                   context=ctx)
    cfg = _config(tmp_path, f'{{protocol: openephys, address: "tcp://127.0.0.1:{emu.data_port}", idle_end_s: 1.0}}')
    emu.start()
    try:
        assert main(["run", str(cfg), "--seconds", "45"]) == 0
        emu.wait(10)
    finally:
        emu.close()
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("stage latency (ms): "))
    named = [part.split(" p50 ")[0] for part in line.removeprefix("stage latency (ms): ").split(", ")]
    assert named == EPHYS_STAGES + ["ring", "decode"]
    for part in line.split(", "):
        p50, p99 = float(part.split(" p50 ")[1].split(" p99 ")[0]), float(part.split(" p99 ")[1])
        assert 0 < p50 <= p99, part


@pytest.mark.parametrize("break_it, message", [
    (lambda st: st[:1] + [CommonReference(16, 512)] + st[2:],
     r"stage 'bandpass' gives <f4\[1024, 16\] but the next stage 'common_reference' takes <f4\[512, 16\]"),
    (lambda st: build_ephys_stages(15, 1024), r"stage 'bin' gives <f4\[15\] but the next stage 'ring' takes <f4\[16\]"),
])
def test_a_mis_specified_graph_is_refused_before_the_first_block(tmp_path, monkeypatch, break_it, message):
    """The whole ephys graph, extraction -> ring -> decoder, is checked before the source is connected."""
    cfg = _config(tmp_path, '{protocol: openephys, address: "tcp://127.0.0.1:45871"}')  # 16 neurons
    good = run_mod.ephys_stages
    monkeypatch.setattr(run_mod, "ephys_stages", lambda c, n: break_it(good(c, n)))

    def connect(*args, **kwargs):
        raise AssertionError("the source was connected before the graph was checked")

    monkeypatch.setattr(run_mod, "make_ingest", connect)
    with pytest.raises(StageError, match=message):
        run_session(cfg, seconds=1)


def test_neuron_count_must_match(tmp_path, rec, ctx, caplog):
    cfg = _config(tmp_path, '{protocol: openephys, address: "tcp://127.0.0.1:45871", channels: [0, 1, 2]}')
    with pytest.raises(ConfigError, match=r"3 channels.*16 neurons"):
        run_session(cfg, seconds=1)
    cfg = _config(tmp_path, '{protocol: eventbroadcaster, address: "tcp://127.0.0.1:45871", units: [a, b]}', n=8)
    with pytest.raises(ConfigError, match=r"2 units.*8 neurons"):
        run_session(cfg, seconds=1)
    # without channels listed, the stream's channel count is checked at its first block: a stream
    # that does not fit is rejected (counted under 'source', the reason logged), never taken, and it
    # does not end the session (a stray stream must not; issue 12)
    emu = Emulator(rec, data_port=0, broadcaster_port=None, speed=0, block_size=BLOCK, wait_subscriber_s=30,
                   context=ctx)
    cfg = _config(tmp_path, f'{{protocol: openephys, address: "tcp://127.0.0.1:{emu.data_port}"}}', n=8)
    emu.start()
    try:
        with caplog.at_level(logging.WARNING):
            stats = run_session(cfg, seconds=4)
    finally:
        emu.close()
    assert stats["frames"] == 0
    assert "sends 16 channels but the model card has 8" in caplog.text
    assert stats["rejected_by_reason"].get("source", 0) >= 1, stats["rejected_by_reason"]


def _cfg(source):
    return {"source": source, "extraction": {"ephys": {}}, "decoder": {"model": "m"}}


def test_config_fields_of_the_ephys_source():
    c = parse_config(_cfg({"protocol": "openephys", "address": "tcp://127.0.0.1:5556",
                           "stim_address": "tcp://10.0.0.2:5570", "idle_end_s": 2}))
    assert c.source.stim_address == "tcp://10.0.0.2:5570" and c.source.idle_end_s == 2
    with pytest.raises(ConfigError, match="stim_address: only used with protocol openephys or eventbroadcaster"):
        parse_config({"source": {"protocol": "rtframe", "address": "tcp://127.0.0.1:5556",
                                 "stim_address": "tcp://127.0.0.1:5570"},
                      "extraction": {"two_photon": {"rois": "r"}}, "decoder": {"model": "m"}})
    with pytest.raises(ConfigError, match="units: only used with protocol eventbroadcaster"):
        parse_config(_cfg({"protocol": "openephys", "address": "tcp://127.0.0.1:5556", "units": ["a"]}))
    with pytest.raises(ConfigError, match="source.stim_address"):
        parse_config(_cfg({"protocol": "eventbroadcaster", "address": "tcp://127.0.0.1:5558",
                           "stim_address": "tcp://x"}))
    with pytest.raises(ConfigError, match="port 5558 on 127.0.0.1 is already used"):
        parse_config(_cfg({"protocol": "eventbroadcaster", "address": "tcp://127.0.0.1:5558",
                           "stim_address": "tcp://localhost:5558"}))
    with pytest.raises(ConfigError, match="group_by"):
        parse_config(_cfg({"protocol": "eventbroadcaster", "address": "tcp://127.0.0.1:5558", "group_by": "x"}))
    with pytest.raises(ConfigError, match="listed more than once"):
        parse_config(_cfg({"protocol": "eventbroadcaster", "address": "tcp://127.0.0.1:5558", "units": ["a", "a"]}))
