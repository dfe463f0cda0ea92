"""SIGTERM and SIGINT end a live session cleanly (`StopOnSignals`, used by `rtdecode run`; also
importable from rtdecode.live.session)."""

from __future__ import annotations

import signal
import threading
from typing import Callable

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignals:
    """Context manager: SIGTERM / SIGINT -> `reason` set and `on_stop(reason)` called (issue 27, class 4).

    `rtdecode run` is stopped by systemd and `timeout` (SIGTERM), `kill` and Ctrl-C (SIGINT). Without
    a handler SIGTERM ended the process at once: no end.json, status.json left at 'recording', the
    open chunk lost; and a run started with `&` from a script inherits SIGINT ignored (SIG_IGN), so
    Ctrl-C did nothing. This installs one handler for both, whatever their disposition was (an
    inherited SIG_IGN included), and restores the previous ones on exit. The first signal only
    records the request (`reason`, e.g. 'signal SIGTERM') and calls `on_stop(reason)`
    (LiveSession.stop): the loop sees it at its next turn (it waits at most 50 ms for a message) and
    takes the path of a normal end: the open chunk flushed, end.json written, status.json 'stopped'
    with the reason. A second signal raises KeyboardInterrupt: a way out when the clean path itself
    hangs (a disk that does not answer). The handler does no I/O and takes no lock. Handlers can only
    be installed from the main thread; elsewhere (a session run in a thread) this does nothing.
    """

    def __init__(self, on_stop: Callable[[str], None] | None = None):
        self.on_stop = on_stop
        self.reason: str | None = None
        self._before: dict[int, object] = {}

    def __enter__(self) -> "StopOnSignals":
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in SIGNALS:
            self._before[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._before.clear()

    def _handle(self, signum, frame) -> None:
        if self.reason is not None:  # the second signal: stop now
            raise KeyboardInterrupt(f"signal {signal.Signals(signum).name} while stopping")
        self.reason = f"signal {signal.Signals(signum).name}"
        if self.on_stop is not None:
            self.on_stop(self.reason)

    def attach(self, on_stop: Callable[[str], None]) -> None:
        """Call `on_stop` on a signal from now on (at once if one already came)."""
        self.on_stop = on_stop
        if self.reason is not None:
            on_stop(self.reason)
