"""What every source's ingest offers the live loop (rtdecode.live.session.LiveSession), as a
`typing.Protocol`: the registry's ingest factories (rtdecode.sources.protocols) return one.

- `receive(timeout_ms)`: the next `wire.Message` (`frame`, `stim` or `stats` with `end: True`), or
  None when nothing came within `timeout_ms`. Malformed input is counted under a reason of
  rtdecode.sources.rejects, never raised.
- `counts()`: a dict with at least `received` (messages by topic), `rejected`, `rejected_by_reason`
  and `dropped` (messages or bins lost to gaps); sources add their own keys (restarts, clock, ...).
- `dropped`, `n_rejected`: the two totals, for live checks.
- `close()`: closes its sockets; it is called once, also after a failed start.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from rtdecode.sources import wire

REQUIRED_COUNTS = ("received", "rejected", "rejected_by_reason", "dropped")


@runtime_checkable
class SourceIngest(Protocol):
    """The ingest interface (see the module docstring)."""

    def receive(self, timeout_ms: int = 100) -> wire.Message | None: ...

    def counts(self) -> dict: ...

    @property
    def dropped(self) -> int: ...

    @property
    def n_rejected(self) -> int: ...

    def close(self) -> None: ...
