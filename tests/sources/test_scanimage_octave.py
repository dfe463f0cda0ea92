"""The ScanImage user function run for real, in GNU Octave with JeroMQ, under stand-ins of ScanImage's
objects (drivers/scanimage/octave/), replaying the real two-photon TIFF frame by frame.

`rtdecode probe` must receive every frame bit-exact: its SHA-256 over the frame payloads equals the
SHA-256 of the TIFF's pixels computed here. Each frame is cut into two ROIs (horizontal strips, as a
multi-ROI scan), every other frame is stored not transposed, planes cycle through zIdx 1, 2, and the
ROI's channel (2) differs from the displayed channel (1): the headers must say roi, plane (zIdx) and
the ROI's channel, and match `matlab_equivalent_message` field for field; read with scan_rois
[1, 2] and planes [1, 2], every frame lands in its (plane, scan ROI) field, plane-major.

Skips only when `octave` or the JeroMQ jar (Debian `libjeromq-java`) is missing; .ci/run installs both.
"""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zmq

from rtdecode.extract.planes import Planes
from rtdecode.sources import wire
from rtdecode.sources.scanimage import matlab_equivalent_message
from tests import ROOT

# ../shared/data from the project's root (a worktree under wt/ looks two levels up)
SIMA_TIF = next((p for p in (ROOT / ".." / "shared", ROOT / ".." / ".." / "shared")
                 if (p / "data" / "sima_2p_example" / "example.tif").is_file()),
                ROOT / ".." / "shared") / "data" / "sima_2p_example" / "example.tif"
JEROMQ_JAR = Path(os.environ.get("RTDECODE_JEROMQ_JAR", "/usr/share/java/jeromq.jar"))
ROIS, PLANES, CHANNEL, DISPLAY_CHANNEL = 2, 2, 2, 1

pytestmark = [
    pytest.mark.octave,
    pytest.mark.skipif(shutil.which("octave") is None, reason="GNU Octave not installed (apt-get install octave)"),
    pytest.mark.skipif(not JEROMQ_JAR.is_file(), reason=f"JeroMQ jar not found at {JEROMQ_JAR} "
                       "(apt-get install libjeromq-java, or set RTDECODE_JEROMQ_JAR)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collect(endpoint: str, out: list, stop: threading.Event, ready: threading.Event) -> None:
    """A second subscriber, for the headers (the probe reports counts and the hash only)."""
    ctx = zmq.Context.instance()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 100000)
    sub.connect(endpoint)
    ready.set()
    try:
        while not stop.is_set():
            if sub.poll(50):
                out.append(sub.recv_multipart())
    finally:
        sub.close(linger=0)


def _wait_for(path: Path, text: str, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if path.is_file() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return False


def test_octave_user_function_replays_real_tiff_bit_exact(tmp_path):
    if not SIMA_TIF.is_file():
        pytest.skip(f"real two-photon TIFF not found at {SIMA_TIF}")
    movie = tifffile.imread(SIMA_TIF).astype("<u2")  # (20, 128, 256)
    n, lines, pixels = movie.shape
    expected_sha = hashlib.sha256(movie.tobytes()).hexdigest()  # frames, ROI strips in order = whole frames
    raw = tmp_path / "frames.raw"
    movie.tofile(raw)
    timestamps = [k / 30.0 for k in range(n)]
    meta = {"raw": str(raw), "frames": n, "lines": lines, "pixels": pixels,
            "frame_numbers": list(range(1, n + 1)), "timestamps": timestamps, "rois": ROIS, "planes": PLANES,
            "channel": CHANNEL, "display_channels": DISPLAY_CHANNEL, "alternate_transposed": True}
    (tmp_path / "meta.json").write_text(json.dumps(meta))

    port = _free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    report = tmp_path / "probe.json"
    probe_log = tmp_path / "probe.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(probe_log, "w") as log:
        probe = subprocess.Popen([sys.executable, "-m", "rtdecode", "-v", "probe", endpoint, "--protocol", "rtframe",
                                  "--seconds", "180", "--idle", "3", "--json", str(report)],
                                 stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    got: list = []
    stop, ready = threading.Event(), threading.Event()
    collector = threading.Thread(target=_collect, args=(endpoint, got, stop, ready), daemon=True)
    collector.start()
    try:
        assert ready.wait(10)
        assert _wait_for(probe_log, "probing", 120), probe_log.read_text()  # its SUB connects right after
        drivers = ROOT / "drivers" / "scanimage"
        script = (f"addpath('{drivers}'); addpath('{drivers / 'octave'}'); javaaddpath('{JEROMQ_JAR}'); "
                  f"n = replay_raw_frames('{tmp_path / 'meta.json'}', {port}, 2); printf('replayed %d\\n', n);")
        oct_run = subprocess.run(["octave", "--no-gui", "--quiet", "--no-init-file", "--eval", script],
                                 capture_output=True, text=True, timeout=300)
        assert oct_run.returncode == 0, oct_run.stdout + oct_run.stderr
        assert f"replayed {n}" in oct_run.stdout, oct_run.stdout + oct_run.stderr
        probe.wait(timeout=200)
    finally:
        if probe.poll() is None:
            probe.kill()
        time.sleep(0.5)
        stop.set()
        collector.join(5)

    assert probe.returncode == 0, probe_log.read_text()
    r = json.loads(report.read_text())
    assert r["frames"] == n * ROIS and r["dropped"] == 0 and r["rejected"] == 0, r
    assert r["first_seq"] == 0 and r["last_seq"] == n * ROIS - 1
    assert r["frame_sha256"] == expected_sha  # every frame, bit-exact

    assert len(got) == n * ROIS
    bounds = np.linspace(0, lines, ROIS + 1).round().astype(int)
    for i, frames in enumerate(got):
        msg = wire.decode(frames)
        k, roi = divmod(i, ROIS)
        strip = movie[k, bounds[roi]:bounds[roi + 1]]
        h = msg.header
        assert (h["seq"], h["roi"], h["channel"], h["plane"]) == (i, roi + 1, CHANNEL, k % PLANES + 1), h
        assert h["frameNumberAcq"] == k + 1 and h["frameTimestamp"] == pytest.approx(timestamps[k])
        np.testing.assert_array_equal(msg.array, strip)
        # the Python mirror of the driver builds the same message (t is the sender's clock)
        mirror = matlab_equivalent_message(strip.T, seq=i, t=h["t"], frame_number_acq=k + 1,
                                           frame_timestamp=timestamps[k], channel=CHANNEL,
                                           plane=k % PLANES + 1, roi=roi + 1)
        assert json.loads(mirror[1]) == {**h, "frameTimestamp": json.loads(mirror[1])["frameTimestamp"]}
        assert list(json.loads(mirror[1])) == list(h)  # same fields, same order
        assert mirror[2] == frames[2]

    # what rtdecode makes of the stream with source.channel 2, planes [1, 2], scan_rois [1, 2]: every
    # frame extracted, each into its (plane, scan ROI) field, one volume per 4 frames, plane-major
    sel = Planes(CHANNEL, list(range(1, PLANES + 1)), scan_rois=list(range(1, ROIS + 1)))
    headers = [wire.decode(frames).header for frames in got]
    assert [sel.ignore(h) for h in headers] == [None] * len(got)
    fields = [(h["plane"], h["roi"]) for h in headers]
    assert fields == sel.fields * (n // PLANES) and sel.fields == [(1, 1), (1, 2), (2, 1), (2, 2)]
