"""Where the live loop runs: the pipeline thread on a CPU of its own, this process's other threads
(ZeroMQ's I/O threads, the recorder's writer, the trigger worker, BLAS workers) on the others.

Why: every send on a socket with a subscriber wakes ZeroMQ's I/O thread, and on a 2-core PC the
woken thread often preempts the thread that sent. With both in one process on the same cores, a
send of the decoded frame took p50 0.03-0.04 ms but p99 2.9-4.5 ms on the loaded development
machine; with the I/O thread on CPU 0 and the sender on CPU 1, p99 0.05 ms (docs/latency.md,
benchmarks/results/cpu_pinning.json). Linux only (os.sched_setaffinity); elsewhere, or with one
CPU, nothing is pinned.
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


class Pinning:
    """`with Pinning(cpu): ...` pins the calling thread to `cpu` (None: the last CPU it may use)
    and the process's other threads to the remaining CPUs; `refresh()` moves threads started since;
    leaving restores every mask. Inactive (`active` False, a no-op) with fewer than 2 CPUs or
    without sched_setaffinity.

    priority: 1..99 also runs the calling thread under SCHED_FIFO at that priority (needs root or
    CAP_SYS_NICE / an rtprio limit; refused: a warning, `realtime` False in the summary), so that
    other programs' work on its CPU cannot delay a frame, and ZeroMQ's I/O threads (named
    "ZMQbg/IO/n" by libzmq; they move every message in and out) at the same priority on the other
    CPUs; None (default): normal scheduling."""

    def __init__(self, cpu: int | None = None, priority: int | None = None):
        cpus = allowed_cpus()
        self.active = len(cpus) >= 2 and hasattr(os, "sched_setaffinity")
        if cpu is not None and cpus and cpu not in cpus:
            raise ConfigError(f"cpu.pipeline: CPU {cpu} is not one this process may use ({cpus}); "
                              "choose one of them, or leave it unset")
        self.cpu = (cpus[-1] if cpu is None else cpu) if self.active else None
        self.others = frozenset(cpus) - {self.cpu} if self.active else frozenset()
        self._saved: dict[int, set[int]] = {}
        self._main_tid: int | None = None
        self._main_before: set[int] | None = None
        self.moved = 0
        self.priority = priority
        self.realtime = self.ran_realtime = False  # under SCHED_FIFO now / at any time
        self.realtime_error: str | None = None
        self._policy_before: tuple[int, int] | None = None
        self._rt_threads: list[int] = []
        self.rt_io = 0

    def __enter__(self) -> "Pinning":
        if not self.active:
            log.info("live loop not pinned: %s", "a single CPU" if hasattr(os, "sched_setaffinity")
                     else "this OS has no sched_setaffinity")
            return self
        self._main_tid = threading.get_native_id()
        self._main_before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {self.cpu})
        if self.priority is not None:
            self._set_realtime()
        self.refresh()
        log.info("live loop on CPU %d; %d other thread(s) on CPU(s) %s", self.cpu, self.moved, sorted(self.others))
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
        """Move this process's threads not seen yet (other than the pipeline's) to the other CPUs."""
        if not self.active or self._main_tid is None:
            return
        try:
            tids = [int(t) for t in os.listdir("/proc/self/task")]
        except OSError:
            return
        for tid in tids:
            if tid == self._main_tid:
                continue
            if tid not in self._saved:
                try:
                    before = os.sched_getaffinity(tid)
                    os.sched_setaffinity(tid, self.others)
                except OSError:  # the thread ended meanwhile, or may not be moved
                    continue
                # a thread started by the pinned loop inherited its CPU: give it the loop's old mask back
                self._saved[tid] = self._main_before if before == {self.cpu} else before
                self.moved += 1
            # a new thread names itself once running: looked for at every refresh until found
            if self.realtime and tid not in self._rt_threads and _name(tid).startswith("ZMQbg/IO"):
                try:
                    os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(self.priority))
                    self._rt_threads.append(tid)
                    self.rt_io += 1
                except OSError:
                    pass

    def __exit__(self, *exc) -> None:
        if not self.active or self._main_tid is None:
            return
        if self.realtime and self._policy_before is not None:
            try:
                os.sched_setscheduler(0, self._policy_before[0], os.sched_param(self._policy_before[1]))
            except OSError:
                pass
            self.realtime = False
        for tid in self._rt_threads:
            try:
                os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            except OSError:
                pass
        self._rt_threads.clear()
        os.sched_setaffinity(0, self._main_before)
        for tid, mask in self._saved.items():
            try:
                os.sched_setaffinity(tid, mask)
            except OSError:
                pass
        self._saved.clear()
        self._main_tid = None

    def summary(self) -> dict:
        """{pinned, pipeline_cpu, other_cpus, threads_moved} for the session's stats."""
        return {"pinned": self.active, "pipeline_cpu": self.cpu, "other_cpus": sorted(self.others),
                "threads_moved": self.moved, "priority": self.priority,
                "realtime": self.ran_realtime, "realtime_io_threads": self.rt_io,
                **({"realtime_error": self.realtime_error} if self.realtime_error else {})}


def _name(tid: int) -> str:
    """A thread's name as the kernel has it (/proc/self/task/TID/comm), "" if gone."""
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
