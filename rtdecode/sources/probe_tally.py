"""What `rtdecode probe` counts while it listens: its stop clock, the TTL / spike tally with the
hash of their canonical lines, and the channel-major hash of continuous samples (spooled to
temporary files, so long probes do not fill memory). The report's fields are described in
`rtdecode.sources.probe`."""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections import Counter

SPOOL_BYTES = 16 * 1024 * 1024  # per channel, before spooling to a temporary file


class Clock:
    """Stop conditions: `seconds` in all, or `idle_s` without a message once something arrived."""

    def __init__(self, seconds: float, idle_s: float):
        self.seconds, self.idle_s = seconds, idle_s
        self.start = time.monotonic()
        self.first: float | None = None
        self.last: float | None = None
        self.reason = ""

    def saw(self) -> None:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.last = now

    def done(self) -> bool:
        now = time.monotonic()
        if now - self.start >= self.seconds:
            self.reason = f"{self.seconds:g} s elapsed"
            return True
        if self.idle_s > 0 and self.last is not None and now - self.last >= self.idle_s:
            self.reason = f"idle for {self.idle_s:g} s after data"
            return True
        return False

    def summary(self) -> dict:
        active = (self.last - self.first) if self.first is not None else 0.0
        return {"wall_s": round(time.monotonic() - self.start, 4), "active_s": round(active, 4),
                "stopped_because": self.reason}


MAX_KEYS = 256  # distinct names (lines, electrodes) counted one by one; the rest together


class EventLog:
    """Counts of TTL events and spikes, plus the hash of their canonical lines."""

    def __init__(self):
        self.ttl = 0
        self.ttl_by_line: Counter[str] = Counter()
        self.spikes = 0
        self.spikes_by_electrode: Counter[str] = Counter()
        self.sha = hashlib.sha256()

    def add_ttl(self, stream: str, sample: int, line: int, state: int) -> None:
        self.ttl += 1
        key = f"line {line} {'on' if state else 'off'}"
        if key in self.ttl_by_line or len(self.ttl_by_line) < MAX_KEYS:  # bounded: the sender picks lines
            self.ttl_by_line[key] += 1
        self.sha.update(f"ttl,{stream},{sample},{line},{int(bool(state))}\n".encode())

    def add_spike(self, stream: str, electrode: str, sample: int, sorted_id: int) -> None:
        self.spikes += 1
        if electrode in self.spikes_by_electrode or len(self.spikes_by_electrode) < MAX_KEYS:  # bounded
            self.spikes_by_electrode[electrode] += 1
        else:
            self.spikes_by_electrode["(other electrodes)"] += 1
        self.sha.update(f"spike,{stream},{electrode},{sample},{sorted_id}\n".encode())

    def report(self) -> dict:
        return {"ttl": self.ttl, "ttl_by_line": dict(sorted(self.ttl_by_line.items())),
                "spikes": self.spikes, "spikes_by_electrode": dict(sorted(self.spikes_by_electrode.items())),
                "events_sha256": self.sha.hexdigest()}


class ChannelMajorHash:
    """SHA-256 of float32 samples in channel-major order, fed block by block (any channel order).

    Each channel's samples are appended to its own spool (memory, then a temporary file past
    `spool_bytes`); `hexdigest()` hashes channel after channel in channel_num order.
    """

    def __init__(self, spool_bytes: int = SPOOL_BYTES):
        self.spool_bytes = spool_bytes
        self.spools: dict[int, tempfile.SpooledTemporaryFile] = {}
        self.samples: Counter[int] = Counter()

    def add(self, channel: int, samples) -> None:
        f = self.spools.get(channel)
        if f is None:
            # closed by close(): the spool outlives this call
            f = self.spools[channel] = tempfile.SpooledTemporaryFile(max_size=self.spool_bytes)  # noqa: SIM115
        f.write(samples.astype("<f4", copy=False).tobytes())
        self.samples[channel] += samples.size

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for ch in sorted(self.spools):
            f = self.spools[ch]
            f.seek(0)
            while chunk := f.read(1 << 20):
                h.update(chunk)
            f.seek(0, 2)
        return h.hexdigest()

    def close(self) -> None:
        for f in self.spools.values():
            f.close()
        self.spools.clear()
