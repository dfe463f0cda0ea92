"""The live loop pinned to a CPU of its own (rtdecode.live.cpu): every other thread moved off it,
every mask restored after."""

import os
import threading
import time

import pytest

from rtdecode.errors import ConfigError
from rtdecode.live.cpu import Pinning, allowed_cpus

pytestmark = pytest.mark.skipif(len(allowed_cpus()) < 2 or not hasattr(os, "sched_setaffinity"),
                                reason="needs 2 or more CPUs and sched_setaffinity")


def _worker(stop, tid_box):
    tid_box.append(threading.get_native_id())
    stop.wait(10)


def test_pins_the_loop_and_moves_other_threads_then_restores():
    cpus = set(allowed_cpus())
    stop, before_tid, later_tid = threading.Event(), [], []
    t1 = threading.Thread(target=_worker, args=(stop, before_tid), daemon=True)
    t1.start()
    while not before_tid:
        time.sleep(0.001)
    with Pinning() as p:
        assert p.active and p.cpu == max(cpus) and p.others == cpus - {p.cpu}
        assert os.sched_getaffinity(0) == {p.cpu}
        assert os.sched_getaffinity(before_tid[0]) == p.others
        t2 = threading.Thread(target=_worker, args=(stop, later_tid), daemon=True)  # inherits the loop's CPU
        t2.start()
        while not later_tid:
            time.sleep(0.001)
        assert os.sched_getaffinity(later_tid[0]) == {p.cpu}
        p.refresh()
        assert os.sched_getaffinity(later_tid[0]) == p.others
        assert p.summary()["threads_moved"] >= 2
    assert os.sched_getaffinity(0) == cpus
    assert os.sched_getaffinity(before_tid[0]) == cpus and os.sched_getaffinity(later_tid[0]) == cpus
    stop.set()


def test_a_cpu_outside_the_allowed_set_is_a_config_error():
    with pytest.raises(ConfigError, match="cpu.pipeline"):
        Pinning(max(allowed_cpus()) + 100)


def test_priority_runs_the_loop_realtime_where_allowed_and_says_so_where_not():
    with Pinning(priority=10) as p:
        if p.realtime:
            assert os.sched_getscheduler(0) & ~os.SCHED_RESET_ON_FORK == os.SCHED_FIFO
            import zmq

            ctx = zmq.Context()
            sock = ctx.socket(zmq.PUB)  # starts the context's I/O thread, which then names itself
            for _ in range(200):
                p.refresh()
                if p.summary()["realtime_io_threads"]:
                    break
                time.sleep(0.005)
            assert p.summary()["realtime_io_threads"] >= 1
            sock.close()
            ctx.term()
        else:
            assert p.realtime_error  # refused (no root / rtprio limit): said, normal scheduling
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    s = p.summary()
    assert s["priority"] == 10 and s["realtime"] == (p.realtime_error is None)
