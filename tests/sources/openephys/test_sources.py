"""The protocol side of the ephys path: the ZMQ Interface source cuts blocks at bin edges and marks
gaps and restarts for the extraction (fed reassembled blocks directly, no sender needed)."""

import numpy as np
import zmq

from rtdecode.sources.openephys import zmq_interface_wire as ziw
from rtdecode.sources.openephys.continuous import ContinuousSource

FS, C = 1000.0, 2  # bins of 10 samples at bin_ms 10


def _chunk(a, n):
    data = np.arange(a, a + n, dtype=np.float32)[None].repeat(C, 0)
    return ziw.ContinuousChunk("s", a, FS, [0, 1], ["CH1", "CH2"], data, timestamp_ms=(a + n) * 1.0)


def _blocks(src, *chunks):
    out = []
    for a, n in chunks:
        src._on_chunk(_chunk(a, n), 0.0, out)
    return out


def test_blocks_are_cut_at_bin_edges_and_gaps_and_restarts_are_marked():
    ctx = zmq.Context()
    src = ContinuousSource("127.0.0.1", 45999, n_channels=C, bin_ms=10.0, block_samples=4, context=ctx)
    try:
        got = _blocks(src, (100, 13), (113, 9))  # samples 100..121: bins [100,110) [110,120) [120,130)
        assert [(b.sample, b.data.shape[0], b.bin, b.closes) for b in got] == [
            (100, 4, 0, False), (104, 4, 0, False), (108, 2, 0, True), (110, 3, 1, False),
            (113, 4, 1, False), (117, 3, 1, True), (120, 2, 2, False)]
        assert all(b.data.shape == (b.data.shape[0], C) and b.data[0, 0] == b.sample for b in got)
        # the bin's time: the block's timestamp (its last sample, s) minus the samples after the bin's end
        assert got[2].t == 113 / 1000 - 3 / FS and (got[2].bin_start, got[2].bin_end) == (100, 110)
        # samples 122..134 lost: bins 2 and 3 hold missing samples and are dropped, 4 goes on
        got = _blocks(src, (135, 10))
        assert src.dropped_bins == 2 and got[0].skip == 13 and not got[0].restart
        assert [(b.sample, b.bin, b.closes) for b in got] == [(135, 3, False), (139, 3, False), (140, 4, False),
                                                              (144, 4, False)]
        # sample numbers go back: a new grid from there, frame numbers continue, the open bin 4 is dropped
        got = _blocks(src, (7, 12))
        assert src.restarts == 1 and src.dropped_bins == 3
        assert got[0].restart and got[0].skip == 0 and not any(b.restart for b in got[1:])
        assert [(b.sample, b.bin, b.closes) for b in got] == [(7, 5, False), (11, 5, False), (15, 5, True),
                                                              (17, 6, False)]
        end: list = []
        src.finish(end)
        assert len(end) == 1 and end[0].partial and end[0].closes and end[0].bin == 6 and end[0].bin_end == 19
    finally:
        src.close()
        ctx.destroy(linger=0)


def test_the_adapter_moves_the_extraction_clock_across_gaps_and_restarts():
    from rtdecode.extract.ephys_stages import SampleChain, build_ephys_stages
    from rtdecode.live.ephys import EphysIngest

    ctx = zmq.Context()
    src = ContinuousSource("127.0.0.1", 45998, n_channels=C, bin_ms=10.0, block_samples=4, context=ctx)
    chain = SampleChain(build_ephys_stages(C, 4, band=None, reference=None, threshold_uv=0.5))
    ing = EphysIngest(src, chain, context=ctx)
    detect = chain.stages[1]

    def feed(a, n):
        ing.items += _blocks(src, (a, n))
        ing._run_items()
        return [m.header["frameNumberAcq"] for m in ing.queue], detect.crossings.t

    try:
        assert feed(100, 22) == ([0, 1], 122)  # sample clock: the first block's sample number on
        ing.queue.clear()
        assert feed(135, 10) == ([], 145)  # a gap of 13 samples: skipped, bins 2, 3 dropped
        assert feed(7, 12) == ([5], 19)  # a restart: the clock starts again at the new first sample
        assert ing.counts()["dropped"] == 3 and ing.counts()["restarts"] == 1
    finally:
        ing.close()
        ctx.destroy(linger=0)


def test_sorted_spikes_far_future_sample_number_is_a_restart_not_a_flood():
    """A spike whose sample_number jumps 2**62 ahead (hostile or corrupt) restarts the bin grid; it
    never hands out the empty bins in between (which would not end), and unknown unit names are
    counted by name only up to a bound."""
    from rtdecode.sources.openephys import event_broadcaster as eb
    from rtdecode.sources.openephys.sorted_spikes import MAX_UNKNOWN, SortedSpikeSource

    src = SortedSpikeSource("127.0.0.1", 1, n_inputs=2, bin_ms=10.0, units=["a", "b"])
    try:
        out: list = []

        def spike(s, electrode="a"):
            return eb.BroadcastSpike("st", 100, electrode, 1, 30000.0, s, 0)

        for s in range(0, 30000, 300):
            src._on_event(spike(s), 0.0, out)
        n_before = len(out)
        assert 90 <= n_before <= 100
        src._on_event(spike(2**62), 0.0, out)
        assert src.restarts == 1 and len(out) - n_before <= 1
        for k in range(MAX_UNKNOWN + 500):
            src._on_event(spike(2**62 + 1 + k, electrode=f"x{k}"), 0.0, out)
        assert len(src.unknown_units) <= MAX_UNKNOWN + 1
        assert sum(src.unknown_units.values()) == MAX_UNKNOWN + 500
    finally:
        src.close()
