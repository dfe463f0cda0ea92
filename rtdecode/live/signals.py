"""SIGTERM and SIGINT as a request to stop cleanly (issue 27, class 4).

`rtdecode run` is stopped by systemd (SIGTERM), `kill`, `timeout` (SIGTERM) and Ctrl-C (SIGINT).
Without a handler SIGTERM ends the process at once: no end.json, status.json left at 'recording', the
open chunk lost. And a run started with `&` from a script inherits SIGINT ignored (the shell sets it
to SIG_IGN for background jobs), so Ctrl-C does nothing at all.

`StopOnSignals` installs one handler for both signals, whatever their disposition was before (an
inherited SIG_IGN included), and restores the previous ones on exit. The first signal only records
the request (`reason`, e.g. 'signal SIGTERM') and calls `on_stop(reason)`: the live loop sees it at
its next turn (it waits at most 50 ms for a message) and takes the same path as the end of the
source: the open chunk is flushed, end.json written, status.json 'stopped' with the reason. A second
signal raises KeyboardInterrupt: a way out when the clean path itself hangs (a disk that does not
answer). The handler does no I/O and takes no lock (logging happens in the loop, not here).

Signal handlers can only be installed from the main thread; elsewhere (a session run inside a test
thread) `StopOnSignals` does nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from typing import Callable

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopOnSignals:
    """Context manager: SIGTERM / SIGINT -> `reason` set and `on_stop(reason)` called, once."""

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
