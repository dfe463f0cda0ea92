"""Reading a recorded session (rtdecode.outputs.record) back, checked.

`read_session` checks every chunk against the manifest (missing, damaged: SHA-256 mismatch or
unreadable, inconsistent keys or shapes: such a chunk is reported and left out, never misaligning
the arrays), and reports `.tmp` leftovers and sessions that ended by error; `summarize` gives what
`rtdecode inspect` prints.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.outputs.record import KEYS, OPTIONAL_GROUPS, OPTIONAL_KEYS


def _read_json(path: Path):
    """(object, problem): the JSON in `path`, or None and what is wrong (never raises)."""
    try:
        return json.loads(path.read_bytes().decode("utf-8")), None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return None, f"{path.name}: unreadable ({type(exc).__name__}: {str(exc)[:100]})"


def chunk_problem(z_files, arrays: dict, neurons, frame_shape, extras=None) -> str | None:
    """Why a chunk's arrays are inconsistent with the session (its KEYS, plus the per-frame `extras`
    session.json declares as {name: {shape, dtype}}), or None."""
    keys = set(z_files)
    extras = extras if isinstance(extras, dict) else {}
    want_keys = set(KEYS) | set(extras)
    for group in OPTIONAL_GROUPS:
        if not keys & set(group):  # recorded before them
            want_keys -= set(group)
    if keys != want_keys:
        missing, extra = sorted(want_keys - keys), sorted(keys - want_keys)
        return f"keys differ from the session's (missing {missing}, extra {extra})"
    rows = {len(v) if v.ndim else -1 for v in arrays.values()}
    if len(rows) != 1:
        return f"arrays of different lengths {sorted(rows)}"
    want = {"number": (), "t": (), "shown": (2,), "target": (2,), "latency_s": ()}
    want |= {k: () for k in OPTIONAL_KEYS if k in keys}
    if isinstance(neurons, int):
        want["activity"] = (neurons,)
    if isinstance(frame_shape, list):
        want["decoded"] = want["stimulus"] = tuple(frame_shape)
    for k, spec in extras.items():
        if isinstance(spec, dict) and isinstance(spec.get("shape"), list):
            want[k] = tuple(spec["shape"])
    for k, shape in want.items():
        if arrays[k].shape[1:] != tuple(shape):
            return f"'{k}' rows are {list(arrays[k].shape[1:])}, the session's are {list(shape)}"
    return None


def read_session(folder: str | Path) -> dict:
    """Load a session folder: {'meta', 'end' (None if killed), 'triggers', arrays concatenated over
    the chunks that are whole and consistent (with `decoded_valid` for every row: derived from NaN
    rows in sessions recorded before it), 'damaged': list of problems, 'missing_chunks',
    'unfinished_chunks' (.tmp leftovers), 'status'}. RecordError if it is not a session at all;
    anything else wrong is reported in 'damaged', never raised."""
    folder = Path(folder)
    meta_path = folder / "session.json"
    if not meta_path.is_file():
        raise RecordError(f"{folder} is not an rtdecode session (no session.json)")
    meta, problem = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise RecordError(f"{meta_path}: not a JSON object ({problem or type(meta).__name__})")
    neurons, frame_shape = meta.get("neurons"), meta.get("frame_shape")
    damaged: list[str] = []
    end = None
    if (folder / "end.json").is_file():
        end, problem = _read_json(folder / "end.json")
        if problem or not isinstance(end, dict):
            damaged.append(problem or "end.json: not a JSON object")
            end = None
    status, _ = _read_json(folder / "status.json") if (folder / "status.json").is_file() else (None, None)
    status = status if isinstance(status, dict) else None
    # the manifest: what landed, with hashes (end.json's copy, else the lines written as chunks landed)
    manifest: dict[str, dict] = {}
    has_manifest = (folder / "manifest.jsonl").is_file() or (end is not None and "chunks" in end)
    if end is not None and isinstance(end.get("chunks"), list):
        entries = end["chunks"]
    else:
        entries = []
        try:
            lines = (folder / "manifest.jsonl").read_bytes().splitlines() if (folder / "manifest.jsonl").is_file() else []
        except OSError as exc:
            lines = []
            damaged.append(f"manifest.jsonl: unreadable ({exc})")
        for i, line in enumerate(lines):
            try:
                entries.append(json.loads(line))
            except (ValueError, RecursionError):
                damaged.append(f"manifest.jsonl line {i + 1} is not JSON")
    for e in entries:
        if isinstance(e, dict) and isinstance(e.get("file"), str):
            manifest[e["file"]] = e
    chunk_dir = folder / "chunks"
    files = sorted(chunk_dir.glob("*.npz")) if chunk_dir.is_dir() else []
    on_disk = {p.name for p in files}
    missing = sorted(set(manifest) - on_disk)
    indices = sorted(int(p.stem) for p in files if p.stem.isdigit())
    expected = set(range(max(indices) + 1)) if indices else set()
    expected |= {int(Path(f).stem) for f in manifest if Path(f).stem.isdigit()}
    missing = sorted(set(missing) | {f"{i:06d}.npz" for i in expected - set(indices)})
    for name in missing:
        e = manifest.get(name)
        damaged.append(f"{name}: missing" + (f" (frames {e.get('first')}..{e.get('last')})" if e else ""))
    parts: dict[str, list] = {}
    for path in files:
        try:
            data = path.read_bytes()
            e = manifest.get(path.name)
            if e is not None and e.get("sha256") != hashlib.sha256(data).hexdigest():
                damaged.append(f"{path.name}: damaged (SHA-256 differs from the manifest)")
                continue
            if e is None and has_manifest and end is not None:
                damaged.append(f"{path.name}: not in the manifest")
                continue
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            problem = chunk_problem(arrays.keys(), arrays, neurons, frame_shape, meta.get("extras"))
            if problem:
                damaged.append(f"{path.name}: inconsistent: {problem}")
                continue
        except Exception as exc:  # noqa: BLE001 -- any unreadable chunk is reported, never raised
            damaged.append(f"{path.name}: damaged ({type(exc).__name__}: {str(exc)[:100]})")
            continue
        for k, v in arrays.items():
            parts.setdefault(k, []).append(v)
    leftovers = sorted(p.name for p in folder.rglob("*.tmp"))
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if "decoded" in arrays and "decoded_valid" not in arrays:  # recorded before the flag: NaN rows were the marker
        arrays["decoded_valid"] = ~np.isnan(arrays["decoded"]).reshape(len(arrays["decoded"]), -1).all(axis=1)
    triggers = []
    tpath = folder / "triggers.jsonl"
    if tpath.is_file():
        for i, line in enumerate(tpath.read_bytes().splitlines()):
            try:
                triggers.append(json.loads(line))
            except (ValueError, RecursionError):
                damaged.append(f"triggers.jsonl line {i + 1} is not JSON")
    if end is not None:
        if end.get("ended_by") == "error":
            damaged.append(f"the session ended by an error: {str(end.get('error'))[:200]}")
        if end.get("damaged"):
            damaged.append(f"recording failed during the session: {str(end.get('damaged'))[:200]}")
        lost = end.get("lost_records")
        if isinstance(lost, int) and lost > 0:
            damaged.append(f"{lost} records could not be written")
        if leftovers:
            damaged.append(f"unfinished files left behind: {', '.join(leftovers[:10])}")
    elif status is not None and status.get("state") in ("damaged", "error"):
        damaged.append(f"status.json: {status.get('state')} ({str(status.get('reason'))[:200]}); end.json missing")
    return {"meta": meta, "end": end, "triggers": triggers, "arrays": arrays, "damaged": damaged,
            "missing_chunks": missing, "unfinished_chunks": leftovers, "status": status}


def summarize(session: dict) -> dict:
    """What a session holds: duration, frames, triggers, gaps; `ok` False if anything is damaged
    or missing, or the session ended by an error."""
    a = session["arrays"]
    number = a.get("number", np.zeros(0, np.int64))
    t = a.get("t", np.zeros(0))
    gaps = int(np.sum(np.maximum(np.diff(number) - 1, 0))) if number.size > 1 else 0
    end = session["end"]
    suppressed = sum(1 for e in session["triggers"] if isinstance(e, dict) and e.get("suppressed"))
    return {
        "frames": int(number.size),
        "duration_s": float(t[-1] - t[0]) if t.size > 1 else 0.0,
        "triggers": len(session["triggers"]) - suppressed,
        "suppressed_triggers": suppressed,
        "gaps": gaps,
        "neurons": session["meta"].get("neurons"),
        "clean_stop": end is not None and end.get("ended_by", "stop") == "stop",
        "ended_by": None if end is None else end.get("ended_by", "stop"),
        "missing_chunks": session.get("missing_chunks", []),
        "unfinished": session.get("unfinished_chunks", []),
        "damaged": session["damaged"],
        "ok": not session["damaged"],
    }
