"""Issue 27, class 4: `rtdecode run` stopped by SIGTERM (systemd, kill, timeout) or SIGINT (Ctrl-C,
also when inherited as ignored by a run started with `&`) takes the clean path: exit 0, the open
chunk flushed, end.json written, status.json 'stopped' with the signal as its reason, `inspect` 0.
A real child process on loopback sockets, frames still arriving when the signal comes."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from rtdecode import cli
from rtdecode.bench import hostile
from rtdecode.outputs.session_reader import read_session
from rtdecode.sources import wire
from tests import ROOT



def _start(rig, record, ignore_sigint=False):
    env = dict(os.environ, PYTHONPATH=str(ROOT))

    def before():  # what a non-interactive shell does to a job started with `&`
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    return subprocess.Popen([sys.executable, "-m", "rtdecode", "run", str(rig), "--record", str(record),
                             "--seconds", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=before if ignore_sigint else None)


def _signal_mid_chunk(tmp_path, sig, ignore_sigint=False):
    """Frames at 30 Hz; after 1.5 s (mid-way through the second one-second chunk) `sig`, frames
    still coming. Returns (exit code, stderr, frames sent)."""
    rig, port = hostile._rig(tmp_path, "rtframe", hostile._free_port())
    ctx = zmq.Context.instance()
    pub = ctx.socket(zmq.XPUB)
    pub.setsockopt(zmq.LINGER, 0)
    pub.bind(f"tcp://127.0.0.1:{port}")
    proc = _start(rig, tmp_path / "s", ignore_sigint)
    sent = 0
    try:
        assert pub.poll(120_000), proc.stderr.read().decode() if proc.poll() is not None else "never subscribed"
        while pub.poll(300):
            pub.recv()
        t0 = time.monotonic()
        signalled = None
        while time.monotonic() - t0 < 30:
            now = time.monotonic()
            if signalled is None and now - t0 >= 1.5:
                proc.send_signal(sig)
                signalled = now
            if signalled is not None and (proc.poll() is not None or now - signalled > 10):
                break
            sent += 1
            pub.send_multipart(wire.encode("frame", sent - 1, time.time(), np.full((64, 64), 100 + sent % 50, np.uint16),
                                           frameNumberAcq=sent, channel=1, plane=1))
            time.sleep(1 / 30)
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"rtdecode run did not stop within 10 s of {signal.Signals(sig).name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pub.close()
    return proc.returncode, err.decode("utf-8", "replace"), sent


def _check_clean(tmp_path, name, rc, err, capsys):
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
    folder = tmp_path / "s"
    assert (folder / "end.json").is_file(), "no end.json: the session's end was lost"
    end = json.loads((folder / "end.json").read_text())
    assert end["ended_by"] == "stop" and end["stop_reason"] == f"signal {name}"
    assert end["stopped_by"] == f"signal {name}"
    status = json.loads((folder / "status.json").read_text().strip())
    assert status["state"] == "stopped" and status["reason"] == f"signal {name}"
    session = read_session(folder)
    assert not session["damaged"]
    number = session["arrays"]["number"]
    # every frame the session processed is on disk: the open chunk was flushed
    assert end["frames"] > 30 and number.size == end["frames"] == end["written"] and end["records_lost"] == 0
    assert len(end["chunks"]) >= 2
    assert cli.main(["inspect", str(folder)]) == 0
    assert "stopped cleanly" in capsys.readouterr().out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_chunk_stops_cleanly(tmp_path, sig, capsys):
    rc, err, _ = _signal_mid_chunk(tmp_path, sig)
    _check_clean(tmp_path, signal.Signals(sig).name, rc, err, capsys)


def test_sigint_inherited_as_ignored_still_stops_cleanly(tmp_path, capsys):
    rc, err, _ = _signal_mid_chunk(tmp_path, signal.SIGINT, ignore_sigint=True)
    _check_clean(tmp_path, "SIGINT", rc, err, capsys)


def test_a_killed_session_is_not_reported_as_finished(tmp_path, capsys):
    """SIGKILL cannot be handled: no end.json, and `inspect` says so with a non-zero exit."""
    rc, _, _ = _signal_mid_chunk(tmp_path, signal.SIGKILL)
    assert rc == -signal.SIGKILL
    assert not (tmp_path / "s" / "end.json").exists()
    assert json.loads((tmp_path / "s" / "status.json").read_text().strip())["state"] == "recording"
    assert cli.main(["inspect", str(tmp_path / "s")]) == 1
    assert "did not stop cleanly" in capsys.readouterr().out
