"""Where and how the live loop runs: optionally pinned to one CPU, optionally real-time.

On the 2-core development machine (benchmarks/results/cpu_pinning.json, 5 interleaved 30-Hz runs
each, light load from other jobs) acquired -> published p99 was, median of runs (worst):
unpinned 2.03 ms (3.32); the loop pinned to one CPU 2.28 (5.35); pinned and every other thread of
the process moved to the other CPU 3.97 (5.90): ZeroMQ's I/O threads then wait behind the sender;
the loop and ZeroMQ's I/O threads under SCHED_FIFO (`priority`) 1.80 (2.28). So by default nothing
is pinned; a rig that can grant real-time priority (root, or an rtprio limit for the user) should
set `cpu.priority`. Linux only (os.sched_setaffinity / sched_setscheduler); elsewhere a no-op.
"""

from __future__ import annotations

import logging
import os
import threading

from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


def allowed_cpus() -> list[int]:
    """The CPUs this thread may run on ([] where the OS cannot tell)."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return []


class Placement:
    """`with Placement(cpu, priority): ...` runs the calling thread (the live loop) on `cpu` (None:
    wherever the OS schedules it) and, with `priority` 1..99, under SCHED_FIFO at that priority,
    with ZeroMQ's I/O threads (named "ZMQbg/IO/n" by libzmq: they move every message in and out)
    at the same priority on any CPU; `refresh()` finds I/O threads started since. Leaving restores
    every setting. Real-time refused (no root / rtprio limit): a warning, `realtime` False in
    `summary()`, normal scheduling. The loop's policy resets on fork: threads it starts run normally."""

    def __init__(self, cpu: int | None = None, priority: int | None = None):
        cpus = allowed_cpus()
        if cpu is not None and cpus and cpu not in cpus:
            raise ConfigError(f"cpu.pipeline: CPU {cpu} is not one this process may use ({cpus}); "
                              "choose one of them, or leave it unset")
        self.cpu = cpu if hasattr(os, "sched_setaffinity") else None
        self.priority = priority
        self.realtime = False  # under SCHED_FIFO now
        self.ran_realtime = False  # at any time
        self.realtime_error: str | None = None
        self.rt_io = 0
        self._rt_threads: list[int] = []
        self._affinity_before: set[int] | None = None
        self._policy_before: tuple[int, int] | None = None
        self._entered = False

    def __enter__(self) -> "Placement":
        self._entered = True
        if self.cpu is not None:
            self._affinity_before = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {self.cpu})
        if self.priority is not None:
            self._set_realtime()
            self.refresh()
        log.info("live loop: %s, %s", f"CPU {self.cpu}" if self.cpu is not None else "not pinned",
                 f"SCHED_FIFO {self.priority} ({self.rt_io} I/O thread(s))" if self.realtime else "normal scheduling")
        return self

    def _set_realtime(self) -> None:
        try:
            self._policy_before = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
            # RESET_ON_FORK: threads the loop starts later run with normal scheduling, not real-time
            os.sched_setscheduler(0, os.SCHED_FIFO | os.SCHED_RESET_ON_FORK, os.sched_param(self.priority))
            self.realtime = self.ran_realtime = True
        except (AttributeError, OSError) as exc:
            self.realtime_error = f"{type(exc).__name__}: {exc}"
            log.warning("cpu.priority %d: SCHED_FIFO refused (%s); the live loop runs with normal scheduling "
                        "(run as root, or give the user an rtprio limit)", self.priority, self.realtime_error)

    def refresh(self) -> None:
        """Give ZeroMQ I/O threads not seen yet the loop's real-time priority (a new thread names
        itself once running, so this is called again at every stats tick)."""
        if not self.realtime:
            return
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return
        main = threading.get_native_id()
        for tid in tids:
            if tid == main or tid in self._rt_threads or not _name(tid).startswith("ZMQbg/IO"):
                continue
            try:
                os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.priority))
            except OSError:
                continue
            self._rt_threads.append(tid)
            self.rt_io += 1

    def __exit__(self, *exc) -> None:
        if not self._entered:
            return
        self._entered = False
        for tid in self._rt_threads:
            try:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass
        self._rt_threads.clear()
        if self.realtime and self._policy_before is not None:
            try:
                os.sched_setscheduler(0, self._policy_before[0], os.sched_param(self._policy_before[1]))
            except OSError:
                pass
            self.realtime = False
        if self._affinity_before is not None:
            os.sched_setaffinity(0, self._affinity_before)

    def summary(self) -> dict:
        """{pipeline_cpu, priority, realtime, realtime_io_threads[, realtime_error]} for the stats."""
        return {"pipeline_cpu": self.cpu, "priority": self.priority, "realtime": self.ran_realtime,
                "realtime_io_threads": self.rt_io,
                **({"realtime_error": self.realtime_error} if self.realtime_error else {})}


def _name(tid: int) -> str:
    """A thread's name as the kernel has it (/proc/self/task/TID/comm), "" if gone."""
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def limit_blas_threads(n: int | None) -> int | None:
    """Set the BLAS thread count of this process (None: leave it); returns the count before.

    On a small rig PC the live loop shares cores with acquisition: spare BLAS threads spin and get
    descheduled every frame, so live sessions run with 1 (benchmarks/results/bench_e2e.json,
    `rtdecode bench e2e`: the rank-128 decode stage p50 0.35 ms with the default 2 threads vs
    0.32 ms with 1; the full-rank decoder was slower still with 2, a result not kept).
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    before = max((p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"), default=None)
    if n is not None:
        threadpool_limits(n, user_api="blas")
    return before

