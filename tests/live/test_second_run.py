"""Issue 27, class 7: a second `rtdecode run` on ports already in use gives one clear error line
(the address, what to do), exits non-zero, and its session folder records the start-up failure as
an error (`inspect` exits non-zero), never as a clean stop with 0 frames."""

import json
import re

import zmq

from rtdecode import cli
from rtdecode.bench import hostile


def _rig(tmp_path, **extra):
    rig, _ = hostile._rig(tmp_path, "rtframe", hostile._free_port())
    text = rig.read_text()
    for k, v in extra.items():
        text += f"{k}: {v}\n"
    rig.write_text(text)
    return rig, re.search(r'publish: "(.*)"', text).group(1)


def test_publish_port_in_use_is_a_clear_error_recorded_as_one(tmp_path, capsys):
    rig, publish = _rig(tmp_path)
    other = zmq.Context.instance().socket(zmq.PUB)  # the first run's publisher
    other.setsockopt(zmq.LINGER, 0)
    other.bind(publish)
    try:
        rc = cli.main(["run", str(rig), "--record", str(tmp_path / "s"), "--seconds", "1"])
    finally:
        other.close()
    err = capsys.readouterr().err
    assert rc != 0
    assert "Traceback" not in err and "ZMQError" not in err
    assert publish in err and "already in use" in err and "outputs.publish" in err
    end = json.loads((tmp_path / "s" / "end.json").read_text())
    assert end["ended_by"] == "error" and "could not start" in end["error"] and publish in end["error"]
    assert json.loads((tmp_path / "s" / "status.json").read_text())["state"] == "error"
    assert cli.main(["inspect", str(tmp_path / "s")]) == 1
    assert "ended by an error" in capsys.readouterr().out


def test_trigger_port_in_use_names_the_trigger_key(tmp_path, capsys):
    port = hostile._free_port()
    rig, _ = _rig(tmp_path, triggers=f'[{{name: t, kind: zmq, address: "tcp://127.0.0.1:{port}", '
                                      f'rule: {{kind: luminance, threshold: 0}}}}]')
    other = zmq.Context.instance().socket(zmq.PUB)
    other.setsockopt(zmq.LINGER, 0)
    other.bind(f"tcp://127.0.0.1:{port}")
    try:
        rc = cli.main(["run", str(rig), "--record", str(tmp_path / "s"), "--seconds", "1"])
    finally:
        other.close()
    err = capsys.readouterr().err
    assert rc != 0 and "Traceback" not in err and f"127.0.0.1:{port}" in err and "triggers.0.address" in err
    assert cli.main(["inspect", str(tmp_path / "s")]) == 1
