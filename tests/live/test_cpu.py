"""Where the live loop runs (rtdecode.live.cpu.Placement): pinned and real-time as asked, every
setting restored after."""

import os
import time

import pytest
import zmq

from rtdecode.errors import ConfigError
from rtdecode.live.cpu import Placement, allowed_cpus

pytestmark = pytest.mark.skipif(not allowed_cpus() or not hasattr(os, "sched_setaffinity"),
                                reason="needs sched_setaffinity")


def test_pins_the_loop_to_its_cpu_then_restores():
    cpus = set(allowed_cpus())
    with Placement(max(cpus)) as p:
        assert os.sched_getaffinity(0) == {max(cpus)}
    assert os.sched_getaffinity(0) == cpus
    assert p.summary()["pipeline_cpu"] == max(cpus) and p.summary()["realtime"] is False


def test_by_default_nothing_changes():
    cpus = set(allowed_cpus())
    with Placement():
        assert os.sched_getaffinity(0) == cpus and os.sched_getscheduler(0) == os.SCHED_OTHER


def test_a_cpu_outside_the_allowed_set_is_a_config_error():
    with pytest.raises(ConfigError, match="cpu.pipeline"):
        Placement(max(allowed_cpus()) + 100)


def test_priority_runs_loop_and_io_threads_realtime_where_allowed_and_says_so_where_not():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.PUB)  # starts the context's I/O thread, which then names itself
    try:
        with Placement(priority=10) as p:
            if p.realtime:
                assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
                for _ in range(200):
                    p.refresh()
                    if p.rt_io:
                        break
                    time.sleep(0.005)
                assert p.summary()["realtime_io_threads"] >= 1
                io = p._rt_threads[0]
                assert os.sched_getscheduler(io) == os.SCHED_FIFO
            else:
                assert p.realtime_error  # refused (no root / rtprio limit): said, normal scheduling
        assert os.sched_getscheduler(0) == os.SCHED_OTHER
        if p.ran_realtime:
            assert os.sched_getscheduler(io) == os.SCHED_OTHER
        assert p.summary()["priority"] == 10 and p.summary()["realtime"] == (p.realtime_error is None)
    finally:
        sock.close()
        ctx.term()
