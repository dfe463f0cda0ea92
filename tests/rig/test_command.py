"""`rtdecode rig`: the virtual rig as a process of its own (frames and stimulus on two sockets), the
files configs/virtual_rig_2p.yaml needs, and the shipped configs' first lines."""

import os
import socket
import subprocess
import sys

import yaml

from rtdecode.cli import main
from rtdecode.live.run import run_session
from rtdecode.sources.probe import probe
from tests import ROOT

CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rig(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "rtdecode", "rig", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)


def test_rig_process_streams_frames_and_stimulus_on_two_sockets():
    frames_ep, stim_ep = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    proc = _rig("--frames", frames_ep, "--stim", stim_ep, "--seconds", "1", "--speed", "0", "--neurons", "30",
                "--shape", "64", "64", "--wait", "60")
    try:
        r = probe([frames_ep, stim_ep], "rtframe", seconds=90, idle_s=2.0)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "sent 30 frames" in out
    assert r["topics"]["frame"]["messages"] == 30 and r["topics"]["stim"]["messages"] == 30, r
    assert r["topics"]["frame"]["shapes"] == {"<u2 [64, 64]": 30}
    assert r["ended"] == 1 and r["dropped"] == 0 and r["rejected"] == 0


def test_rig_writes_what_the_virtual_config_needs_and_run_uses_it(tmp_path):
    """The shipped virtual_rig_2p.yaml with its paths and ports moved to tmp: the rig's --write-rois /
    --model output makes it run."""
    rois, model = tmp_path / "data" / "virtual" / "rois", tmp_path / "models" / "virtual"
    small = ["--neurons", "40", "--shape", "96", "96", "--train-trials", "2", "--seed", "3"]
    assert main(["rig", "--write-rois", str(rois), "--model", str(model), "--prepare-only", *small]) == 0
    assert (rois / "stat.npy").is_file() and (model / "card.json").is_file()
    cfg = yaml.safe_load((ROOT / "configs" / "virtual_rig_2p.yaml").read_text())
    frames_ep, stim_ep = f"tcp://127.0.0.1:{_free_port()}", f"tcp://127.0.0.1:{_free_port()}"
    cfg["source"]["address"] = [frames_ep, stim_ep]
    cfg["extraction"]["two_photon"]["crop"] = [64, 64]
    cfg["outputs"]["publish"] = f"tcp://127.0.0.1:{_free_port()}"
    for t in cfg.get("triggers") or []:
        t["address"] = f"tcp://127.0.0.1:{_free_port()}"
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "virtual_rig_2p.yaml"  # same relative layout: ../data, ../models
    path.write_text(yaml.safe_dump(cfg))
    proc = _rig("--frames", frames_ep, "--stim", stim_ep, "--seconds", "2", "--speed", "0",
                "--write-rois", str(rois), "--model", str(model), "--wait", "120", *small)
    try:
        stats = run_session(path, seconds=120)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "kept (up to date)" in out  # the files written above are reused, not refitted
    assert stats["frames"] == 60 and stats["dropped"] == 0 and stats["published"] > 0, stats


def test_every_config_says_how_to_run_it():
    """Each shipped rig file runs as shipped, or its first line says the one command that makes what it needs."""
    for path in CONFIGS:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and ("rtdecode " in first or "python -m " in first), (path.name, first)


def test_rig_command_errors_are_actionable(capsys):
    assert main(["rig", "--model", "m"]) == 1
    assert "--model needs --write-rois" in capsys.readouterr().err


def test_rig_replays_open_ephys_and_the_virtual_ephys_config_runs(tmp_path):
    """virtual_rig_ephys.yaml with its ports and model moved to tmp: `rtdecode rig --openephys` makes
    the model it needs and streams the real recording."""
    rec = next((p for p in (ROOT / ".." / "shared", ROOT / ".." / ".." / "shared")
                if (p / "data" / "openephys_v0.6.7_binary").is_dir()), None)
    if rec is None:
        import pytest

        pytest.skip("the Open Ephys recording in ../shared/data is not here")
    rec = rec / "data" / "openephys_v0.6.7_binary"
    model = tmp_path / "models" / "virtual_ephys"
    data_port = _free_port()
    cfg = yaml.safe_load((ROOT / "configs" / "virtual_rig_ephys.yaml").read_text())
    cfg["source"]["address"] = f"tcp://127.0.0.1:{data_port}"
    cfg["source"]["heartbeat"]["port"] = data_port + 1
    cfg["source"]["event_broadcaster"] = f"tcp://127.0.0.1:{_free_port()}"
    cfg["source"]["idle_end_s"] = 3.0
    cfg["outputs"]["publish"] = f"tcp://127.0.0.1:{_free_port()}"
    cfg["triggers"][0]["address"] = f"tcp://127.0.0.1:{_free_port()}"
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "virtual_rig_ephys.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["rig", "--openephys", str(rec), "--model", str(model), "--prepare-only"]) == 0
    proc = _rig("--openephys", str(rec), "--model", str(model), "--data-port", str(data_port), "--speed", "1",
                "--wait", "120")
    try:
        stats = run_session(path, seconds=120)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "kept (up to date) a stand-in model with 16 inputs" in out and "replay done" in out
    assert stats["frames"] > 50 and stats["published"] > 0, stats


def test_virtual_probe_option_errors_are_actionable(capsys):
    assert main(["rig", "--ephys", "--probe-channels", "0"]) == 1
    assert "--probe-channels must lie in 1..384" in capsys.readouterr().err
    assert main(["rig", "--ephys", "--probe-channels", "8", "--units", "0"]) == 1
    assert "--units must lie in" in capsys.readouterr().err
    assert main(["rig", "--ephys", "--openephys", "rec"]) == 1
    assert "--ephys streams the virtual probe" in capsys.readouterr().err
    assert main(["rig", "--ephys", "--data-port", "70000"]) == 1
    assert "--data-port must lie in" in capsys.readouterr().err
