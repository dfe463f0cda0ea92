"""Where a trigger goes. Fast sinks run on the live thread (a ZeroMQ PUB send takes microseconds);
slow ones (a request-reply round trip, a serial pulse) run on the engine's worker thread."""

from __future__ import annotations

import logging
import time

from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)


class ZmqSink:
    """`trigger` messages (rtframe v1) on the session's publisher."""

    slow = False

    def __init__(self, publisher):
        self.pub = publisher

    def fire(self, event: dict) -> bool:
        self.pub.send("trigger", None, **event)
        return True

    def close(self) -> None:
        self.pub.close()


class NetworkEventsSink:
    """Open Ephys Network Events: `TTL Line=N State=1`, then `State=0` after `width_s`, only while the
    GUI acquires (asked with `IsAcquiring`, at most once a second): a trigger counts as confirmed only
    then. `width_s` must cover at least one of the GUI's processing blocks (e.g. 1024 samples at
    30 kHz = 34 ms), or both edges can get the same sample number."""

    slow = True

    def __init__(self, host: str = "127.0.0.1", port: int = 5559, line: int = 1, width_s: float = 0.05,
                 timeout_s: float = 0.2):
        from rtdecode.sources.openephys.network_events import NetworkEventsClient

        self.client = NetworkEventsClient(host, port, timeout_s=timeout_s)
        self.line, self.width_s = line, width_s

    def fire(self, event: dict) -> bool:
        return self.client.confirmed_pulse(self.line, self.width_s)

    def close(self) -> None:
        self.client.close()


class SerialSink:
    """A TTL pulse on a serial line (RTS or DTR pin) through pyserial (optional dependency)."""

    slow = True

    def __init__(self, port: str, pin: str = "rts", width_s: float = 0.005):
        try:
            import serial
        except ImportError:
            raise ConfigError("the serial trigger sink needs pyserial: pip install pyserial") from None
        if pin not in ("rts", "dtr"):
            raise ConfigError(f"serial pin must be 'rts' or 'dtr', got {pin!r}")
        self.port = serial.Serial(port)
        self.pin, self.width_s = pin, width_s

    def fire(self, event: dict) -> bool:
        setattr(self.port, self.pin, True)
        time.sleep(self.width_s)
        setattr(self.port, self.pin, False)
        return True

    def close(self) -> None:
        self.port.close()
