"""Helpers shared by the hostile-input benches (hostile, hostile_time, hostile_io).

Each scenario starts a real `rtdecode run` subprocess on a small rig file with loopback ports; these
build that rig (model, ROIs, rig.yaml), find free ports and read the child's memory.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

N = 4  # inputs of the model (channels / units)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model(folder: Path, neurons: int) -> Path:
    from rtdecode.decode import model as model_dir
    from rtdecode.decode.ridge import random_decoder

    dec = random_decoder(neurons, 4, (12, 16), rank=8, seed=0)
    model_dir.save(folder / "model", model_dir.new_card("ridge", neurons, 0, 4, (12, 16), 30.0), dec.arrays())
    return folder / "model"


def _rig(folder: Path, protocol: str, port: int) -> tuple[Path, int]:
    if protocol == "rtframe":
        from rtdecode.rig.twophoton import Microscope

        Microscope(30, seed=1, frame_shape=(64, 64)).save_rois(folder / "rois")
        _model(folder, 30)
        text = (f'source: {{protocol: rtframe, address: "tcp://127.0.0.1:{port}"}}\n'
                f'extraction: {{two_photon: {{rois: rois, crop: [32, 32]}}}}\n')
    else:
        _model(folder, N)
        if protocol == "openephys":
            source = (f'{{protocol: openephys, address: "tcp://127.0.0.1:{port}", idle_end_s: 3, '
                      f'heartbeat: {{port: {port + 1}, interval_s: 0.05}}}}')
        else:
            units = ", ".join(f'"e{i}"' for i in range(N))
            source = (f'{{protocol: eventbroadcaster, address: "tcp://127.0.0.1:{port}", idle_end_s: 3, '
                      f'units: [{units}]}}')
        text = f"source: {source}\nextraction: {{ephys: {{bin_ms: 33.3, band_hz: null, threshold_uv: 1.0}}}}\n"
    text += f'decoder: {{model: model, backends: [numpy]}}\noutputs: {{publish: "tcp://127.0.0.1:{_free_port()}"}}\n'
    (folder / "rig.yaml").write_text(text)
    return folder / "rig.yaml", port


def _rss_kb(pid: int, key: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return -1


def _start_run(rig: Path, record: Path, nofile: int | None = None) -> subprocess.Popen:
    """`python -m rtdecode run RIG --record RECORD` as a child; `nofile`: its descriptor limit (soft
    and hard, RLIMIT_NOFILE), e.g. the common 1,024."""
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))

    def limit():
        import resource

        resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    return subprocess.Popen([sys.executable, "-m", "rtdecode", "run", str(rig), "--record", str(record),
                             "--seconds", "3600"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                            preexec_fn=None if nofile is None else limit)

