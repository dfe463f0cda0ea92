"""Issue 27, the not-yet-tried list (Open Ephys side), on loopback sockets: the ZMQ Interface's
data port and heartbeat port played by this test, the live adapter (EphysIngest: ContinuousSource
and the extraction stages) reading them. Each attack ends with data flowing as before: every bin
of a usable block is handed out, and what could not be used is counted.

- the heartbeat misbehaving: no reply, late replies, garbage replies (several parts, binary, over
  the size limit): counted (resets, bad replies), the data path untouched;
- a stream's channel count changing mid-session (fewer, more, back), and a second stream appearing;
- `sample_num` going backwards (acquisition stopped and started): a restart, no bogus drop;
- two stimulus publishers on `stim_address`: the first followed, the other's messages counted.
"""

import json
import threading
import time

import numpy as np
import pytest
import zmq
from tests.sources.openephys.helpers import wait_subscribed, xpub

from rtdecode.extract.ephys_stages import SampleChain, build_ephys_stages
from rtdecode.live.ephys import EphysIngest
from rtdecode.sources import wire
from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.continuous import ContinuousSource

RATE = 30000.0
BLOCK = 1000  # samples per processing block
BIN_MS = 1000 * BLOCK / RATE  # one bin per block: the bins handed out are the blocks used


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


class Gui:
    """The plugin's data port: one message per channel and block, message_num counting up."""

    def __init__(self, ctx):
        self.sock, self.port = xpub(ctx)
        self.num = 0
        self.rng = np.random.default_rng(0)

    def block(self, sample, channels, stream="probeA"):
        data = self.rng.normal(0, 10, (len(channels), BLOCK)).astype(np.float32)
        for i, c in enumerate(channels):
            self.num += 1
            self.sock.send_multipart(ziw.encode_data(self.num, stream, c, f"CH{c + 1}", sample, RATE, data[i],
                                                     time.time() * 1000))

    def close(self):
        self.sock.close(linger=0)


class Heartbeat:
    """The plugin's heartbeat REP port (a ROUTER here), answering as `mode` says: 'ok', 'none' (never),
    'late' (after `late_s`), 'parts' (a 3-part reply), 'binary', 'huge' (over the client's 4 KB limit)."""

    def __init__(self, ctx, mode, late_s=0.3):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.port = self.sock.bind_to_random_port("tcp://127.0.0.1")
        self.mode, self.late_s = mode, late_s
        self.requests = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        late = []
        while not self.stop.is_set():
            now = time.monotonic()
            for item in [x for x in late if x[0] <= now]:
                late.remove(item)
                self.sock.send_multipart(item[1])
            if not self.sock.poll(10):
                continue
            ident, empty, body = self.sock.recv_multipart()
            json.loads(body)
            self.requests += 1
            reply = {"ok": [b"heartbeat received"], "late": [b"heartbeat received"], "none": None,
                     "parts": [b"heartbeat", b"received", b"x"], "binary": [bytes(range(256))],
                     "huge": [b"x" * 100_000]}[self.mode]
            if reply is None:
                continue
            if self.mode == "late":
                late.append((now + self.late_s, [ident, empty] + reply))
            else:
                self.sock.send_multipart([ident, empty] + reply)

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.sock.close(linger=0)


def _ingest(ctx, gui, n, channels=None, hb_port=None, hb_interval_s=3600.0, stim_address=None):
    source = ContinuousSource("127.0.0.1", gui.port, n_channels=n, bin_ms=BIN_MS, block_samples=BLOCK,
                              heartbeat_port=hb_port if hb_port is not None else gui.port + 1,
                              heartbeat_interval_s=hb_interval_s, channels=channels, context=ctx)
    source.client.heartbeat_timeout_s = 0.1
    return EphysIngest(source, SampleChain(build_ephys_stages(n, BLOCK, threshold_uv=40.0)),
                       stim_address=stim_address, context=ctx)


def _bins(ingest, until_s=0.5):
    """Every bin handed out until nothing has come for `until_s`: their frame numbers."""
    out, quiet = [], time.monotonic()
    while time.monotonic() - quiet < until_s:
        msg = ingest.receive(20)
        if msg is not None and msg.topic == "frame":
            out.append(msg.header["frameNumberAcq"])
            quiet = time.monotonic()
    return out


def _play(gui, ingest, blocks, pace_s=0.002):
    """Send `blocks` [(sample, channels, stream)], reading the ingest meanwhile; returns the bins."""
    bins = []
    for sample, channels, stream in blocks:
        gui.block(sample, channels, stream)
        time.sleep(pace_s)
        msg = ingest.receive(0)
        while msg is not None:
            if msg.topic == "frame":
                bins.append(msg.header["frameNumberAcq"])
            msg = ingest.receive(0)
    return bins + _bins(ingest)


@pytest.mark.parametrize("mode", ["none", "late", "parts", "binary", "huge"])
def test_a_misbehaving_heartbeat_never_touches_the_data(ctx, mode):
    gui, hb = Gui(ctx), Heartbeat(ctx, mode)
    ingest = _ingest(ctx, gui, 4, hb_port=hb.port, hb_interval_s=0.02)
    try:
        wait_subscribed(gui.sock)
        blocks = [(k * BLOCK, range(4), "probeA") for k in range(200)]
        bins = _play(gui, ingest, blocks, pace_s=0.005)
        counts = ingest.counts()["openephys"]
    finally:
        ingest.close()
        hb.close()
        gui.close()
    assert bins == list(range(200))  # every block's bin, none dropped
    assert hb.requests >= 3 and counts["heartbeats_sent"] >= 3
    if mode in ("none", "late", "huge"):
        assert counts["heartbeat_resets"] >= 2
    if mode == "parts":
        assert counts["bad_heartbeat_replies"] >= 2 and counts["heartbeats_answered"] >= 2
    if mode == "binary":
        assert counts["heartbeats_answered"] >= 2


def test_the_channel_count_changing_mid_session_is_followed(ctx):
    gui = Gui(ctx)
    ingest = _ingest(ctx, gui, 4, channels=[0, 1, 2, 3])
    try:
        wait_subscribed(gui.sock)
        blocks = [(k * BLOCK, range(8), "probeA") for k in range(20)]  # 8 channels, the model takes 0..3
        blocks += [(k * BLOCK, range(6), "probeA") for k in range(20, 40)]  # a channel map drops two
        blocks += [(k * BLOCK, range(2), "probeA") for k in range(40, 50)]  # too few: the model's are gone
        blocks += [(k * BLOCK, range(12), "probeA") for k in range(50, 70)]  # a probe added: more
        bins = _play(gui, ingest, blocks)
        counts = ingest.counts()
    finally:
        ingest.close()
        gui.close()
    oe = counts["openephys"]
    # each change costs at most the block it was learnt on; the blocks without the model's channels are
    # skipped and their bins counted as dropped; everything else is handed out
    assert counts["layout_changes"] == 2  # 8 -> 6 and 2 -> 12 (6 -> 2 leaves the model without its channels)
    assert counts["skipped_chunks"].get("unusable layout", 0) >= 8
    assert len(bins) >= 70 - 10 - 4
    assert set(range(60, 70)) <= set(bins) and set(range(22, 40)) <= set(bins)
    assert len(bins) + counts["dropped"] >= 69  # the last bin may still be open
    assert oe["layout_changes"].get("probeA", 0) >= 2 and oe["late_channels"].get("probeA", 0) > 0


def test_a_second_stream_appearing_changes_nothing_and_is_counted(ctx):
    gui = Gui(ctx)
    ingest = _ingest(ctx, gui, 4)
    try:
        wait_subscribed(gui.sock)
        blocks = []
        for k in range(60):
            blocks.append((k * BLOCK, range(4), "probeA"))
            if k >= 20:
                blocks.append((k * BLOCK, range(16), "probeB"))
        bins = _play(gui, ingest, blocks)
        counts = ingest.counts()
    finally:
        ingest.close()
        gui.close()
    assert bins == list(range(60))
    assert counts["skipped_chunks"]["other stream"] == 40 and counts["dropped"] == 0


def test_sample_numbers_going_backwards_are_a_restart_not_a_gap(ctx):
    gui = Gui(ctx)
    ingest = _ingest(ctx, gui, 4)
    try:
        wait_subscribed(gui.sock)
        blocks = [(k * BLOCK, range(4), "probeA") for k in range(30)]
        blocks += [(k * BLOCK, range(4), "probeA") for k in range(10, 40)]  # back by 20 blocks
        blocks += [(k * BLOCK, range(4), "probeA") for k in range(0, 30)]  # back to 0
        bins = _play(gui, ingest, blocks)
        counts = ingest.counts()
    finally:
        ingest.close()
        gui.close()
    assert bins == list(range(90))  # frame numbers continue across restarts
    assert counts["restarts"] == 2 and counts["dropped"] == 0
    assert sum(counts["openephys"]["missing_samples"].values()) == 0


def test_two_stimulus_publishers_on_the_stim_address_the_first_is_followed(ctx):
    gui = Gui(ctx)
    stim, stim_port = xpub(ctx)
    ingest = _ingest(ctx, gui, 4, stim_address=f"tcp://127.0.0.1:{stim_port}")
    got = []
    try:
        wait_subscribed(gui.sock)
        wait_subscribed(stim)
        for i in range(40):  # publisher A: seq from 0, frames from 0; B: seq from 700, frames from 900
            stim.send_multipart(wire.encode("stim", i, time.time(), None, frame=i, trial=0))
            stim.send_multipart(wire.encode("stim", 700 + i, time.time(), None, frame=900 + i, trial=0))
            gui.block(i * BLOCK, range(4))
            time.sleep(0.002)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (len([f for f in got if f < 900]) < 40 or ingest.stim_sock.poll(200)):
            msg = ingest.receive(20)
            if msg is not None and msg.topic == "stim":
                got.append(msg.header["frame"])
        counts = ingest.counts()
    finally:
        ingest.close()
        stim.close(linger=0)
        gui.close()
    assert [f for f in got if f < 900] == list(range(40))
    assert len([f for f in got if f >= 900]) <= 1  # B's first message cannot be told from a gap yet
    assert counts["rejected_by_reason"].get("source", 0) >= 38 and counts["stim_dropped"] == 0

