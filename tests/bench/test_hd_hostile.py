"""A live `rtdecode run` survives fuzzed messages of each protocol (a few thousand here; the
measured 100,000-message runs are in benchmarks/results/hostile_fuzz_*.json)."""

import pytest

from rtdecode.bench.hostile import run_fuzz


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["rtframe", "openephys", "eventbroadcaster"])
def test_live_run_survives_fuzzed_messages(protocol):
    r = run_fuzz(protocol, 3000, seed=7)
    assert not r["crashed"], r["stderr_tail"]
    assert r["stopped_by"] == "source" and r["frames_processed"] > 0
    assert r["rejected"] > 1000
