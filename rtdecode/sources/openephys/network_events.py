"""Network Events plugin as a trigger sink (closed-loop output into the Open Ephys GUI), REFERENCES C.

The plugin is a REP socket (default `tcp://*:5556`, collides with the ZMQ Interface: set both ports).
Text commands, first token the command then `key=value`:
`TTL Line=<1-256> State=<0|1>` -> `TTLHandled: Line=N State=S`; `StartAcquisition`,
`StopAcquisition`, `StartRecord`, `StopRecord`, `IsAcquiring` / `IsRecording` (-> "1" or "0"). The
GUI stamps a TTL at the first sample of its next processing block, and only while it acquires: it
answers `TTLHandled` either way (the plugin queues the event only when acquiring), so a reply alone
does not prove an event was made; `confirmed_pulse` checks `IsAcquiring` first. Anything the plugin
does not know, and `StartRecord` while already recording, is answered `NotHandled`.

A REQ socket whose request gets no reply cannot send again, so on a timeout the socket is closed and
reopened, the error counted and None returned; the caller is never blocked longer than `timeout_s`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter

import zmq

from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)

MAX_REPLY = 4096  # bytes of a reply (the GUI answers a few words)


class NetworkEventsClient:
    def __init__(self, host: str = "127.0.0.1", port: int = 5556, timeout_s: float = 0.5,
                 context: zmq.Context | None = None):
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0, got {timeout_s}")
        self.ctx = context or zmq.Context.instance()
        self.url = f"tcp://{host}:{port}"
        self.timeout_s = timeout_s
        self.sock: zmq.Socket | None = None
        self.errors: Counter[str] = Counter()
        self.sent = 0
        self.resets = 0
        self._acq_state: bool | None = None  # the GUI's last IsAcquiring answer, and when it was asked
        self._acq_checked = 0.0
        self._open()

    def _open(self) -> None:
        self.sock = self.ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY)  # replies are short strings
        self.sock.connect(self.url)

    def _reset(self) -> None:
        self.sock.close(linger=0)
        self.resets += 1
        self._open()

    @property
    def n_errors(self) -> int:
        return sum(self.errors.values())

    def request(self, command: str) -> str | None:
        """Send one command; its reply, or None after `timeout_s` or a reply that is not one short
        string (socket reset, error counted under a fixed reason)."""
        try:
            self.sock.send_string(command, zmq.NOBLOCK)
            self.sent += 1
            if not self.sock.poll(int(self.timeout_s * 1000)):
                self.errors["timeout"] += 1
                if self.errors["timeout"] <= 10 or self.errors["timeout"] % 1000 == 0:
                    log.warning("Network Events at %s: no reply to %r within %.3f s; socket reset (%d so far)",
                                self.url, command, self.timeout_s, self.errors["timeout"])
                self._reset()
                return None
            parts = self.sock.recv_multipart()  # every part: a multi-part reply must not wedge the REQ
        except zmq.ZMQError as exc:
            self.errors["socket"] += 1
            log.warning("Network Events at %s: socket error (%s); socket reset", self.url, exc)
            self._reset()
            return None
        if len(parts) != 1:
            self.errors["bad reply"] += 1
            return None
        return bytes(parts[0][:MAX_REPLY]).decode("utf-8", "replace")

    def ttl(self, line: int, state: int) -> bool:
        """Set TTL `line` (1-256) to `state` (0/1); True if the GUI confirmed it."""
        if not isinstance(line, int) or isinstance(line, bool) or not 1 <= line <= 256:
            raise ConfigError(f"TTL line must be an integer 1-256, got {line!r}")
        state = 1 if state else 0
        reply = self.request(f"TTL Line={line} State={state}")
        if reply is None:
            return False
        expected = f"TTLHandled: Line={line} State={state}"
        if reply.strip() != expected:
            self.errors["bad reply"] += 1
            log.warning("Network Events: expected %r, got %r", expected, reply[:80])
            return False
        return True

    def pulse(self, line: int, width_s: float = 0.05) -> bool:
        """TTL `line` high, wait `width_s`, low. True if both edges were answered `TTLHandled`
        (which the plugin says even when not acquiring: see `confirmed_pulse`)."""
        on = self.ttl(line, 1)
        time.sleep(max(0.0, width_s))
        off = self.ttl(line, 0)
        return on and off

    def confirmed_pulse(self, line: int, width_s: float = 0.05, state_max_age_s: float = 1.0) -> bool:
        """A pulse only while the GUI acquires (its `IsAcquiring`, asked at most every
        `state_max_age_s`): True if the GUI was acquiring and handled both edges. Not acquiring, or no
        answer: no TTL is sent, False, counted under 'not acquiring' / the request's error."""
        now = time.monotonic()
        if self._acq_state is None or not self._acq_state or now - self._acq_checked > state_max_age_s:
            self._acq_state, self._acq_checked = self.is_acquiring(), now
        if not self._acq_state:
            self.errors["not acquiring"] += 1
            if self.errors["not acquiring"] <= 5 or self.errors["not acquiring"] % 1000 == 0:
                log.warning("Network Events at %s: the GUI is not acquiring (or did not say); TTL on line %d not "
                            "sent (%d so far)", self.url, line, self.errors["not acquiring"])
            return False
        return self.pulse(line, width_s)

    def _simple(self, command: str, *accepted: str) -> bool:
        reply = self.request(command)
        if reply is None:
            return False
        if accepted and reply.strip() not in accepted:
            self.errors["bad reply"] += 1
            log.warning("Network Events: %s answered %r", command, reply[:80])
            return False
        return True

    def start_acquisition(self) -> bool:
        return self._simple("StartAcquisition", "StartedAcquisition")

    def stop_acquisition(self) -> bool:
        return self._simple("StopAcquisition", "StoppedAcquisition")

    def start_record(self) -> bool:
        """True once the GUI records: `StartedRecording`, or `NotHandled` (its answer while already
        recording) with `IsRecording` saying 1."""
        reply = self.request("StartRecord")
        if reply is None:
            return False
        if reply.strip() == "StartedRecording":
            return True
        if reply.strip() == "NotHandled" and self.is_recording():
            return True
        self.errors["bad reply"] += 1
        log.warning("Network Events: StartRecord answered %r", reply[:80])
        return False

    def stop_record(self) -> bool:
        return self._simple("StopRecord", "StoppedRecording")

    def is_acquiring(self) -> bool | None:
        """True/False, or None if the GUI did not answer or answered something else."""
        return self._flag("IsAcquiring")

    def is_recording(self) -> bool | None:
        """True/False, or None if the GUI did not answer or answered something else."""
        return self._flag("IsRecording")

    def _flag(self, command: str) -> bool | None:
        reply = self.request(command)
        if reply is None:
            return None
        r = reply.strip()
        if r in ("1", "0"):
            return r == "1"
        self.errors["bad reply"] += 1
        log.warning("Network Events: %s answered %r", command, reply[:80])
        return None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
