"""Rig files that are not UTF-8, too deep or alias bombs give one clear line quickly; binding beyond
loopback is warned about with the port; freshness: triggers never fire on a stale frame."""

import logging
import time

import numpy as np
import pytest
import zmq

from rtdecode.errors import ConfigError
from rtdecode.live.config import load_config
from rtdecode.outputs.publish import Publisher
from rtdecode.outputs.triggers import LuminanceRule, TriggerEngine
from rtdecode.sources.clock import ClockOffset
from rtdecode.sources.exposure import is_loopback, warn_if_exposed
from rtdecode.sources.openephys.emulator import main as emulator_main
from rtdecode.sources.rejects import Rejects

BOMB = "\n".join([f'{c}: &{c} [{", ".join([f"*{p}"] * 9)}]' for p, c in zip("abcdefgh", "bcdefghi")])
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB


@pytest.mark.parametrize("raw, message", [
    (b"rig: \xff\xfe\n", "not UTF-8"),
    (BOMB.encode(), "alias bomb"),
    (b"[" * 100000, "nested too deep"),
    (b"x: \x00", "not valid YAML"),
])
def test_hostile_rig_files_give_one_clear_line(tmp_path, raw, message):
    p = tmp_path / "rig.yaml"
    p.write_bytes(raw)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(p)
    assert "\n" not in str(info.value) and str(p) in str(info.value)


def test_freshness_settings_are_checked(tmp_path):
    from rtdecode.live.config import parse_config

    base = {"source": {"protocol": "rtframe", "address": "tcp://127.0.0.1:5000"},
            "extraction": {"two_photon": {"rois": "r"}}, "decoder": {"model": "m"}}
    cfg = parse_config(base)
    assert cfg.freshness == "every_frame" and cfg.max_age_ms == 50.0
    assert parse_config(base | {"freshness": "latest", "max_age_ms": 20}).freshness == "latest"
    with pytest.raises(ConfigError, match="freshness: 'newest' is not one of every_frame, latest"):
        parse_config(base | {"freshness": "newest"})
    with pytest.raises(ConfigError, match="max_age_ms"):
        parse_config(base | {"max_age_ms": 0})


def test_binding_beyond_loopback_names_the_port(caplog):
    assert is_loopback("127.0.0.1") and is_loopback("[::1]") and is_loopback("localhost")
    assert not is_loopback("*") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with caplog.at_level(logging.WARNING):
        pub = Publisher("tcp://0.0.0.0:*")
        port = pub.endpoint.rsplit(":", 1)[1]
        pub.close()
        quiet = Publisher("tcp://127.0.0.1:*")
        quiet.close()
    exposed = [m for m in caplog.messages if "beyond loopback" in m]
    assert len(exposed) == 1 and f"port {port}" in exposed[0]
    assert not warn_if_exposed("tcp://127.0.0.1:5", "x")


def test_the_emulator_binds_loopback_by_default(tmp_path, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def fake_load(path):
        raise Stop

    import rtdecode.sources.openephys.emulator as emu

    monkeypatch.setattr(emu, "load_recording", fake_load)
    original = emu.argparse.ArgumentParser.parse_args

    def spy(self, argv=None, namespace=None):
        ns = original(self, argv, namespace)
        seen["host"] = ns.host
        return ns

    monkeypatch.setattr(emu.argparse.ArgumentParser, "parse_args", spy)
    with pytest.raises(Stop):
        emulator_main([str(tmp_path)])
    assert seen["host"] == "127.0.0.1"


def test_no_trigger_on_a_stale_frame_and_the_suppressed_are_recorded():
    recorded = []
    rule = LuminanceRule("bright", 100.0, (4, 4), refractory_s=0.0)
    engine = TriggerEngine([rule], [], record=recorded.append)
    bright = np.full((4, 4), 200.0, np.float32)
    now = time.perf_counter()
    assert engine.on_decoded(bright, 1.0, 0.001, now, acquired=now - 1.0, max_age_s=0.05, trial=1) == 0
    assert engine.on_decoded(bright, 1.1, 0.001, now, acquired=time.perf_counter(), max_age_s=0.05) == 1
    st = engine.stats()
    assert st["suppressed_stale"] == 1 and st["stale_frames"] == 1 and st["fired"] == 1 and st["enabled"]
    assert recorded[0]["suppressed"] == "stale" and recorded[0]["age_ms"] >= 1000 and recorded[0]["trial"] == 1
    assert "suppressed" not in recorded[1] and st["acquired_to_trigger_ms"]["n"] == 1


def test_clock_offset_sees_queueing_and_tracks_the_minimum():
    c = ClockOffset(window_s=60.0)
    assert c.see(100.0, 100.5) == 0.0  # first message: offset 0.5 s (clocks apart), no excess
    assert c.see(101.0, 101.5) == 0.0
    # 0.3 s more than the best: queueing (less the floor's allowed drift, 100 ppm of 1.3 s)
    assert abs(c.see(102.0, 102.8) - 0.3) < 1e-3
    assert c.see(103.0, 103.49) == 0.0 and abs(c.min_delay - 0.49) < 1e-9  # a better path
    s = c.summary()
    assert s["offset_ms"] == 490.0 and s["n"] == 4 and s["jitter_ms"] > 0
    # the sender's clock steps back by 2 s: off the clock (no time) until 3 messages confirm it,
    # then a restart of this publisher's clock estimate, followed at once (tests/sources/test_clock.py)
    assert c.see(104.0 - 2.0, 104.49) is None and c.see(105.0 - 2.0, 105.49) is None
    assert c.see(106.0 - 2.0, 106.49) == 0.0 and abs(c.min_delay - 2.49) < 1e-9
    assert c.summary()["steps"] == 1 and c.summary()["rejected"] == 2


def test_rejects_count_fixed_reasons_and_log_a_bounded_number_of_lines(caplog):
    r = Rejects("t", burst=3, every_s=3600, max_lines=5)
    with caplog.at_level(logging.WARNING):
        for i in range(10000):
            r.reject("field", f"sender text {i}" * 100)
            r.reject(f"made-up reason {i}", "x")
    assert dict(r.counts) == {"field": 10000, "other": 10000}
    lines = [m for m in caplog.messages if "rejected message" in m]
    assert len(lines) == 6 and all(len(m) < 400 for m in lines)  # 3 per reason (burst), then rate-limited
