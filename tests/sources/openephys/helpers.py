"""Shared helpers of the Open Ephys tests (not a test module)."""

import os
import threading
import time
from pathlib import Path

import pytest
import zmq
from tests import ROOT

# the checkout's sibling shared/data (as in /work/main), or RTDECODE_DATA (e.g. from a git worktree)
DATA = Path(os.environ.get("RTDECODE_DATA", ROOT / ".." / "shared" / "data"))
OE_REC = DATA / "openephys_v0.6.7_binary"


def need_recording():
    if not (OE_REC / "Record Node 105").is_dir():
        pytest.skip(f"real Open Ephys recording not found at {OE_REC.resolve()} (see shared/data/README.md)")
    return OE_REC


def xpub(ctx):
    """A bound XPUB (a PUB that can see its subscriber arrive) and its port."""
    s = ctx.socket(zmq.XPUB)
    s.setsockopt(zmq.LINGER, 1000)
    s.bind("tcp://127.0.0.1:*")
    port = int(s.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
    return s, port


def wait_subscribed(sock, timeout_s=5.0):
    assert sock.poll(int(timeout_s * 1000)), "no subscriber arrived"
    sock.recv()
    time.sleep(0.05)


class FakeServer:
    """A ROUTER that answers REQ clients through `reply(request) -> str | None` (None: stay silent)."""

    def __init__(self, ctx, reply):
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.port = int(self.sock.getsockopt_string(zmq.LAST_ENDPOINT).rsplit(":", 1)[1])
        self.reply = reply
        self.requests = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self):
        while not self._stop.is_set():
            if not self.sock.poll(20):
                continue
            ident, empty, body = self.sock.recv_multipart()
            text = body.decode()
            self.requests.append(text)
            answer = self.reply(text)
            if answer is not None:
                self.sock.send_multipart([ident, empty, answer.encode()])

    def close(self):
        self._stop.set()
        self.thread.join(2)
        self.sock.close()
