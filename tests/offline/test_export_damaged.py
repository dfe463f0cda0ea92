"""`rtdecode export --nwb` reads a session through the checked reader of `rtdecode inspect`: a damaged
session (a chunk whose bytes changed, chunks swapped, fabricated rows, an impossible session.json, a
decompression bomb, object arrays in rois.npz) exits 1 naming what is damaged and writes nothing,
unless --allow-damaged; nothing is loaded before its size is checked."""

import hashlib
import io
import json
import os
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest

pynwb = pytest.importorskip("pynwb")

from rtdecode.cli import main  # noqa: E402
from rtdecode.outputs.record import Recorder  # noqa: E402
from rtdecode.outputs.session_reader import read_session  # noqa: E402

pytestmark = pytest.mark.nwb


def _session(path, frames=30, fps=10, neurons=2):
    """Three whole chunks of 10 frames (1 s each at 10 Hz)."""
    rec = Recorder(path, neurons, (2, 2), chunk_s=1.0, fps=fps)
    for k in range(frames):
        rec.add(k, 100.0 + k / fps, np.full(neurons, k, np.float32), np.zeros((2, 2), np.float32), (0, k), (0, k), 0.0)
    rec.close({"frames": frames})
    return path


def _arrays(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _forge_chunk(s, name, data: bytes):
    """Put `data` in place of chunk `name` and its SHA-256 in end.json (as a hostile or buggy writer
    would): only the checks beyond the hash can catch it."""
    (s / "chunks" / name).write_bytes(data)
    end = json.loads((s / "end.json").read_text())
    for e in end["chunks"]:
        if e["file"] == name:
            e["sha256"] = hashlib.sha256(data).hexdigest()
    (s / "end.json").write_text(json.dumps(end))


def _export(s, out, capsys, *extra):
    rc = main(["export", str(s), "--nwb", str(out), *extra])
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def _refused_then_allowed(s, tmp_path, capsys, names_it, frames_left):
    """Exit 1 naming the damage, no file; with --allow-damaged exit 0, only the whole chunks written."""
    out = tmp_path / "x.nwb"
    rc, text = _export(s, out, capsys)
    assert rc == 1 and names_it in text and "--allow-damaged" in text, text
    assert not out.exists() and not list(tmp_path.glob("*.partial.nwb"))
    rc, text = _export(s, out, capsys, "--allow-damaged")
    assert rc == 0 and names_it in text, text
    with pynwb.NWBHDF5IO(str(out), "r") as nwb_io:
        nwb = nwb_io.read()
        assert len(nwb.processing["misc"]["AcquisitionFrameNumber"].data[:]) == frames_left
        assert "DAMAGED" in nwb.session_description and nwb.invalid_times is not None


def test_a_whole_session_exports_with_exit_0(tmp_path, capsys):
    s = _session(tmp_path / "s")
    rc, text = _export(s, tmp_path / "s.nwb", capsys)
    assert rc == 0 and "damaged" not in text


def test_a_chunk_whose_bytes_changed_is_refused(tmp_path, capsys):
    s = _session(tmp_path / "s")
    other = _session(tmp_path / "o", frames=20)
    (s / "chunks" / "000001.npz").write_bytes((other / "chunks" / "000000.npz").read_bytes())
    _refused_then_allowed(s, tmp_path, capsys, "000001.npz: damaged (SHA-256 differs from the manifest)", 20)


def test_two_chunks_swapped_are_refused(tmp_path, capsys):
    s = _session(tmp_path / "s")
    a, b = s / "chunks" / "000000.npz", s / "chunks" / "000001.npz"
    da, db = a.read_bytes(), b.read_bytes()
    a.write_bytes(db)
    b.write_bytes(da)
    _refused_then_allowed(s, tmp_path, capsys, "000000.npz: damaged (SHA-256", 10)
    rc, text = _export(s, tmp_path / "y.nwb", capsys)
    assert "000001.npz: damaged (SHA-256" in text


def test_a_chunk_with_1000x_fabricated_rows_is_refused(tmp_path, capsys):
    s = _session(tmp_path / "s")
    arrays = {k: np.repeat(v, 1000, axis=0) for k, v in _arrays(s / "chunks" / "000001.npz").items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _forge_chunk(s, "000001.npz", buf.getvalue())  # its hash matches: the rows must be checked
    _refused_then_allowed(s, tmp_path, capsys, "000001.npz: inconsistent: 10000 rows, the manifest says 10", 20)


def test_fabricated_rows_without_a_manifest_are_beyond_the_recorders_capacity(tmp_path, capsys):
    s = _session(tmp_path / "s")
    arrays = {k: np.repeat(v, 1000, axis=0) for k, v in _arrays(s / "chunks" / "000001.npz").items()}
    np.savez(s / "chunks" / "000001.npz", **arrays)
    (s / "end.json").unlink()  # as if killed: no end.json, and no manifest lines either
    (s / "manifest.jsonl").unlink()
    _refused_then_allowed(s, tmp_path, capsys, "000001.npz: inconsistent: 10000 rows, more than the 10 a chunk holds",
                          20)


def test_a_session_json_claiming_1e12_neurons_is_refused(tmp_path, capsys):
    s = _session(tmp_path / "s")
    meta = json.loads((s / "session.json").read_text())
    meta["neurons"] = 10**12
    (s / "session.json").write_text(json.dumps(meta))
    out = tmp_path / "x.nwb"
    rc, text = _export(s, out, capsys)
    assert rc == 1 and "session.json: neurons is 1000000000000" in text and not out.exists()
    rc, text = _export(s, out, capsys, "--allow-damaged")  # every chunk disagrees with it: nothing to write
    assert rc == 1 and "no readable frame" in text and not out.exists()
    assert main(["inspect", str(s)]) == 1


def _bomb(path, rows):
    """A chunk whose 'decoded' array declares `rows` x 2 x 2 float32 zeros, deflated: ~4 MB on disk
    per GB in memory (the other arrays as recorded)."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "decoded"}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for k, v in arrays.items():
            with zf.open(f"{k}.npy", "w") as fh:
                np.lib.format.write_array(fh, v)
        with zf.open("decoded.npy", "w", force_zip64=True) as fh:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, 2, 2)})
            zeros, left = bytes(1 << 24), rows * 16
            while left > 0:
                fh.write(zeros[:min(left, len(zeros))])
                left -= len(zeros)
    return buf.getvalue()


def test_a_decompression_bomb_is_refused_before_it_is_decompressed(tmp_path):
    """A 4 MB chunk that expands to 960 MB: export and inspect both refuse it from its header, and
    the process never grows by anything near its size."""
    s = _session(tmp_path / "s")
    data = _bomb(s / "chunks" / "000001.npz", 60_000_000)
    assert len(data) < 8 << 20
    _forge_chunk(s, "000001.npz", data)
    code = textwrap.dedent(f"""
        import sys
        from rtdecode.cli import main
        rcs = [main(["export", {str(s)!r}, "--nwb", {str(tmp_path / 'x.nwb')!r}]), main(["inspect", {str(s)!r}])]
        peak = [int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM")][0]
        print("RESULT", rcs[0], rcs[1], peak // 1024)
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    line = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT")]
    assert line, res.stdout + res.stderr
    _, rc_export, rc_inspect, peak_mib = line[0].split()
    assert (int(rc_export), int(rc_inspect)) == (1, 1), res.stdout + res.stderr
    assert "000001.npz: refused before loading" in res.stdout + res.stderr or \
           "000001.npz: inconsistent: arrays of different lengths" in res.stdout + res.stderr
    assert int(peak_mib) < 600, f"peak RSS {peak_mib} MiB: the bomb was decompressed"
    assert not (tmp_path / "x.nwb").exists()


def test_an_object_array_in_rois_npz_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    s = _session(tmp_path / "s")
    np.savez(s / "rois.npz", index=np.array([{"a": 1}, None], dtype=object), frame_shape=np.array([2, 2]))
    out = tmp_path / "x.nwb"
    rc, text = _export(s, out, capsys)
    assert rc == 1 and "rois.npz: 'index' is an object array" in text and "Traceback" not in text
    assert not out.exists()
    assert main(["inspect", str(s)]) == 1
    rc, text = _export(s, out, capsys, "--allow-damaged")  # the masks are left out, said so
    assert rc == 0 and "ROI masks" in text and "object array" in text
    with pynwb.NWBHDF5IO(str(out), "r") as nwb_io:
        assert "ImageSegmentation" not in nwb_io.read().processing["ophys"].data_interfaces


def test_inspect_and_export_agree_on_what_is_damaged(tmp_path, capsys):
    s = _session(tmp_path / "s")
    (s / "chunks" / "000002.npz").write_bytes(b"PK\x03\x04 not a zip")
    problems = read_session(s)["damaged"]
    rc, text = _export(s, tmp_path / "x.nwb", capsys)
    assert rc == 1 and problems and all(p in text for p in problems)
