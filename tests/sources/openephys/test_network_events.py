"""Network Events client against a fake GUI (a ROUTER answering like the plugin's REP)."""

import re

import pytest
import zmq
from tests.sources.openephys.helpers import FakeServer

from rtdecode.errors import ConfigError
from rtdecode.sources.openephys.network_events import NetworkEventsClient


class FakeGui:
    """Answers as the plugin does: `TTLHandled` whether or not it acquires (it makes an event only
    while acquiring), `NotHandled` to StartRecord while already recording."""

    def __init__(self):
        self.acquiring = False
        self.recording = False
        self.silent = False
        self.wrong = False
        self.events = []  # (line, state) of the TTL events the GUI made

    def __call__(self, text):
        if self.silent:
            return None
        cmd = text.split()[0]
        if cmd == "TTL":
            kv = dict(re.findall(r"(\w+)=(\d+)", text))
            line, state = kv["Line"], kv["State"]
            if self.wrong:
                state = str(1 - int(state))
            if self.acquiring:
                self.events.append((int(line), int(state)))
            return f"TTLHandled: Line={line} State={state}"
        if cmd == "StartAcquisition":
            self.acquiring = True
            return "StartedAcquisition"
        if cmd == "StopAcquisition":
            self.acquiring = False
            return "StoppedAcquisition"
        if cmd == "IsAcquiring":
            return "1" if self.acquiring else "0"
        if cmd == "IsRecording":
            return "1" if self.recording else "0"
        if cmd == "StartRecord" and not self.recording:
            self.recording = True
            return "StartedRecording"
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


def test_oe_network_events_ttl_trusted_only_while_acquiring(ctx):
    """The plugin answers TTLHandled even when idle (no event made): a confirmed pulse asks
    IsAcquiring first and sends nothing while the GUI is idle."""
    gui = FakeGui()
    server = FakeServer(ctx, gui)
    client = NetworkEventsClient(port=server.port, timeout_s=2.0, context=ctx)
    try:
        assert client.ttl(1, 1) is True and gui.events == []  # handled, but no event: the old trap
        n = len(server.requests)
        assert client.confirmed_pulse(2, width_s=0.001) is False
        assert client.errors["not acquiring"] == 1
        assert server.requests[n:] == ["IsAcquiring"]  # no TTL sent
        assert client.start_acquisition()
        assert client.confirmed_pulse(2, width_s=0.001) is True  # idle state is asked again at once
        assert gui.events == [(2, 1), (2, 0)]
        assert client.confirmed_pulse(2, width_s=0.001) is True
        assert server.requests.count("IsAcquiring") == 2  # acquiring: cached for a second
    finally:
        client.close()
        server.close()


def test_oe_network_events_start_record_while_recording(ctx):
    gui = FakeGui()
    server = FakeServer(ctx, gui)
    client = NetworkEventsClient(port=server.port, timeout_s=2.0, context=ctx)
    try:
        assert client.start_record() is True
        assert client.start_record() is True  # NotHandled + IsRecording 1: already recording, fine
        assert server.requests[-2:] == ["StartRecord", "IsRecording"]
        assert client.n_errors == 0
        gui.recording = False
        gui.acquiring = False
        assert client.request("Bogus") == "NotHandled"
    finally:
        client.close()
        server.close()


def test_network_events_pulse_width_from_the_rig_file():
    from rtdecode.live.config import parse_config

    base = {"source": {"protocol": "rtframe", "address": "tcp://127.0.0.1:5555"},
            "extraction": {"two_photon": {"rois": "r"}}, "decoder": {"model": "m"}}
    trig = {"name": "t", "kind": "network_events", "address": "tcp://127.0.0.1:5559", "line": 1}
    assert parse_config(base | {"triggers": [trig]}).triggers[0].pulse_ms == 50.0
    with pytest.raises(ConfigError, match="pulse_ms"):
        parse_config(base | {"triggers": [trig | {"pulse_ms": 0.1}]})
