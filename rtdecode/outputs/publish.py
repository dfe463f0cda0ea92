"""Publish: the decoded stream and the pipeline's stats, as `rtframe` v1 on a PUB socket."""

from __future__ import annotations

import time

import numpy as np
import zmq

from rtdecode.sources import wire
from rtdecode.sources.exposure import bound


class Publisher:
    """A PUB socket with its own `seq` counter. Binds to 127.0.0.1 unless told otherwise."""

    def __init__(self, endpoint: str = "tcp://127.0.0.1:*", hwm: int = 100, context: zmq.Context | None = None):
        self.ctx = context or zmq.Context.instance()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, hwm)  # slow viewers lose old frames, never stall us
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind(endpoint)
        self.endpoint = bound(self.sock, "the publisher")
        self.seq = wire.Sequencer()

    def send(self, topic: str, array: np.ndarray | None = None, t: float | None = None, **fields) -> None:
        frames = wire.encode(topic, self.seq(), time.time() if t is None else t, array, **fields)
        self.sock.send_multipart(frames, copy=False)

    def close(self) -> None:
        self.sock.close()
