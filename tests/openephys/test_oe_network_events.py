"""Network Events client against a fake GUI (a ROUTER answering like the plugin's REP)."""

import re

import pytest
import zmq
from oe_helpers import FakeServer

from rtdecode.errors import ConfigError
from rtdecode.sources.openephys.network_events import NetworkEventsClient


class FakeGui:
    def __init__(self):
        self.acquiring = False
        self.silent = False
        self.wrong = False

    def __call__(self, text):
        if self.silent:
            return None
        cmd = text.split()[0]
        if cmd == "TTL":
            kv = dict(re.findall(r"(\w+)=(\d+)", text))
            line, state = kv["Line"], kv["State"]
            if self.wrong:
                state = str(1 - int(state))
            return f"TTLHandled: Line={line} State={state}"
        if cmd == "StartAcquisition":
            self.acquiring = True
            return "StartedAcquisition"
        if cmd == "StopAcquisition":
            self.acquiring = False
            return "StoppedAcquisition"
        if cmd == "IsAcquiring":
            return "1" if self.acquiring else "0"
        return "NotHandled"


@pytest.fixture
def ctx():
    c = zmq.Context()
    yield c
    c.destroy(linger=0)


def test_oe_network_events_ttl_and_control(ctx):
    gui = FakeGui()
    server = FakeServer(ctx, gui)
    client = NetworkEventsClient(port=server.port, timeout_s=2.0, context=ctx)
    try:
        assert client.is_acquiring() is False
        assert client.start_acquisition()
        assert client.is_acquiring() is True
        assert client.pulse(3, width_s=0.005)
        assert server.requests[-2:] == ["TTL Line=3 State=1", "TTL Line=3 State=0"]
        assert client.stop_acquisition() and client.is_acquiring() is False
        gui.wrong = True
        assert client.ttl(4, 1) is False
        assert client.errors["bad reply"] == 1
        with pytest.raises(ConfigError):
            client.ttl(0, 1)
        with pytest.raises(ConfigError):
            client.ttl(257, 1)
    finally:
        client.close()
        server.close()


def test_oe_network_events_timeout_resets_socket(ctx):
    gui = FakeGui()
    gui.silent = True
    server = FakeServer(ctx, gui)
    client = NetworkEventsClient(port=server.port, timeout_s=0.2, context=ctx)
    try:
        first = client.sock
        assert client.ttl(2, 1) is False
        assert client.errors["timeout"] == 1 and client.resets == 1
        assert client.sock is not first
        gui.silent = False
        assert client.ttl(2, 0) is True  # a fresh REQ can send again and gets its answer
        assert client.n_errors == 1
        assert server.requests == ["TTL Line=2 State=1", "TTL Line=2 State=0"]
    finally:
        client.close()
        server.close()
