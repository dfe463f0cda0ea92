"""Reading a recorded session (rtdecode.outputs.record) back, checked.

`read_session` checks every chunk against the manifest (missing, damaged: SHA-256 mismatch or
unreadable, inconsistent keys, shapes, rows or frame range: such a chunk is reported and left out,
never misaligning the arrays), and reports `.tmp` leftovers, ROI files that are not plain arrays and
sessions that ended by error; `summarize` gives what `rtdecode inspect` prints.

The same checks, one chunk at a time, are `scan_session` (everything but the chunks' arrays) and
`load_chunk`, which `rtdecode export` reads through (rtdecode.offline.session_chunks). Nothing is
loaded before its size is known: a chunk's .npy headers are read first (a few hundred bytes), and
an array that is an object array, of a type rtdecode never writes, of the wrong shape, with more
rows than the manifest or the recorder's capacity, or over MAX_CHUNK_BYTES is refused unread.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
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


# Bounds a session must keep before anything of it is loaded: what session.json may claim, and what
# one chunk's arrays may declare (their .npy headers are read first, without decompressing anything).
MAX_NEURONS = 1_000_000
MAX_FRAME_SIDE = 4096
MAX_CHUNK_BYTES = 1 << 30  # 1 GiB per chunk once loaded (a 30 Hz chunk of 1,000 ROIs is ~10 MB)
PLAIN_KINDS = "biuf"  # bool, int, uint, float: all the recorder writes; never objects, strings or records


class NpyHeader:
    """An array's shape and dtype as its .npy header declares them (nothing loaded): stands in for
    the array in `chunk_problem`."""

    def __init__(self, shape: tuple, dtype: np.dtype):
        self.shape, self.dtype, self.ndim = tuple(shape), dtype, len(shape)
        self.nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize

    def __len__(self):
        return self.shape[0]


def npy_header(zf: zipfile.ZipFile, member: str) -> NpyHeader:
    """The NpyHeader of one .npy member of an open .npz (only its header is decompressed)."""
    with zf.open(member) as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"'{member[:-4]}' is .npy version {version}, which rtdecode does not write")
    return NpyHeader(shape, dtype)


def npz_headers(zf: zipfile.ZipFile) -> dict[str, NpyHeader]:
    """{name: NpyHeader} of every array in an open .npz, read from the .npy headers only (a few
    hundred bytes of each member are decompressed); ValueError says what is wrong."""
    out = {}
    for info in zf.infolist():
        if not info.filename.endswith(".npy"):
            raise ValueError(f"holds {info.filename!r}, not an array")
        out[info.filename[:-4]] = npy_header(zf, info.filename)
    return out


def array_problem(name: str, h: NpyHeader, max_bytes: int) -> str | None:
    """Why an array (by its header) must not be loaded: objects (pickled Python), a type rtdecode
    never writes, or more bytes than `max_bytes`."""
    if h.dtype.hasobject:
        return f"'{name}' is an object array (pickled Python objects), which rtdecode never writes nor loads"
    if h.dtype.kind not in PLAIN_KINDS or h.dtype.itemsize > 8:
        return f"'{name}' is of type {h.dtype}, which rtdecode never writes"
    if h.nbytes > max_bytes:
        return f"'{name}' declares shape {list(h.shape)} ({h.nbytes / 2**20:.0f} MiB), over the {max_bytes / 2**20:.0f} MiB " \
               "a chunk may hold"
    return None


def load_npz(path: Path, what: str, max_bytes: int = MAX_CHUNK_BYTES) -> dict[str, np.ndarray]:
    """The arrays of a whole-session .npz (rois.npz, rois_plane{p}.npz), checked by their headers
    before anything is decompressed; RecordError names the file and what is wrong."""
    try:
        with zipfile.ZipFile(path) as zf:
            headers = npz_headers(zf)
            total = 0
            for name, h in headers.items():
                problem = array_problem(name, h, max_bytes)
                if problem:
                    raise RecordError(f"{path}: {problem}; the file was altered or is not {what}. Give the "
                                      "masks' suite2p folder instead (rtdecode export --rois DIR)")
                total += h.nbytes
            if total > max_bytes:
                raise RecordError(f"{path}: its arrays declare {total / 2**20:.0f} MiB, over {max_bytes / 2**20:.0f} MiB; "
                                  f"not {what}")
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
    except RecordError:
        raise
    except Exception as exc:  # noqa: BLE001 -- a truncated or foreign file: say which, never a traceback
        raise RecordError(f"{path}: unreadable as {what} ({type(exc).__name__}: {str(exc)[:100]})") from None


def _meta_problem(meta: dict) -> str | None:
    """What session.json claims that no recorder writes (e.g. 1e12 neurons), or None."""
    neurons, frame_shape = meta.get("neurons"), meta.get("frame_shape")
    # 0 neurons: a calibration block of a new field of view, raw frames only (no ROIs yet)
    least = 0 if "raw" in (meta.get("extras") or {}) else 1
    if "neurons" in meta and not (isinstance(neurons, int) and not isinstance(neurons, bool)
                                  and least <= neurons <= MAX_NEURONS):
        return (f"session.json: neurons is {neurons!r}; a recorder writes an integer from {least} to {MAX_NEURONS:,}"
                + (" (0 only with raw frames)" if least else ""))
    if "frame_shape" in meta and not (isinstance(frame_shape, list) and len(frame_shape) == 2 and all(
            isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= MAX_FRAME_SIDE for d in frame_shape)):
        return f"session.json: frame_shape is {frame_shape!r}; a recorder writes [height, width], each 1..{MAX_FRAME_SIDE}"
    return None


def chunk_rows(meta: dict) -> int | None:
    """The most rows a chunk holds (the recorder's capacity: chunk_s x fps), None if unknown."""
    chunk_s, fps = meta.get("chunk_s"), meta.get("fps")
    if isinstance(chunk_s, (int, float)) and isinstance(fps, (int, float)) and 0 < chunk_s * fps < 1e6:
        return max(1, int(round(chunk_s * fps)))
    return None


def scan_session(folder: str | Path) -> dict:
    """Everything of a session folder but its chunks' arrays: {'folder', 'meta', 'end' (None if
    killed), 'status', 'manifest' ({file: entry}), 'has_manifest', 'files' (chunk paths on disk, in
    order), 'missing_chunks', 'unfinished_chunks', 'triggers', 'damaged': the problems found so far
    (chunks missing, metadata, triggers, ROI files, how the session ended)}. The chunks are checked
    one at a time by `load_chunk`. RecordError if `folder` is not a session at all."""
    folder = Path(folder)
    meta_path = folder / "session.json"
    if not meta_path.is_file():
        raise RecordError(f"{folder} is not an rtdecode session (no session.json)")
    meta, problem = _read_json(meta_path)
    if not isinstance(meta, dict):
        raise RecordError(f"{meta_path}: not a JSON object ({problem or type(meta).__name__})")
    damaged: list[str] = []
    problem = _meta_problem(meta)
    if problem:
        damaged.append(problem)
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
    for path in sorted(folder.glob("rois*.npz")):  # the masks: checked by their headers, loaded by the exporter
        try:
            with zipfile.ZipFile(path) as zf:
                problems = [array_problem(k, h, MAX_CHUNK_BYTES) for k, h in npz_headers(zf).items()]
        except Exception as exc:  # noqa: BLE001 -- any unreadable file is reported, never raised
            problems = [f"unreadable ({type(exc).__name__}: {str(exc)[:100]})"]
        damaged += [f"{path.name}: {p}" for p in problems if p]
    leftovers = sorted(p.name for p in folder.rglob("*.tmp"))
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
    return {"folder": folder, "meta": meta, "end": end, "status": status, "manifest": manifest,
            "has_manifest": has_manifest, "files": files, "missing_chunks": missing, "unfinished_chunks": leftovers,
            "triggers": triggers, "damaged": damaged}


def load_chunk(path: Path, scan: dict, keys: list[str] | None = None) -> tuple[dict | None, str | None]:
    """(arrays, None) of one chunk of a scanned session (`scan_session`), or (None, what is wrong).

    In order, nothing loaded before it is known safe: the bytes' SHA-256 against the manifest, then
    every array's .npy header (no objects, plain types, shapes the session's, rows at most the
    manifest's and the recorder's capacity, MAX_CHUNK_BYTES in all), then the arrays, then their
    frame range against the manifest. `keys`: load only these arrays (all checks still run)."""
    meta, manifest = scan["meta"], scan["manifest"]
    e = manifest.get(path.name)
    try:
        data = path.read_bytes()
        if e is not None and e.get("sha256") != hashlib.sha256(data).hexdigest():
            return None, f"{path.name}: damaged (SHA-256 differs from the manifest)"
        if e is None and scan["has_manifest"] and scan["end"] is not None:
            return None, f"{path.name}: not in the manifest"
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            headers = npz_headers(zf)
        total = 0
        for k, h in headers.items():
            problem = array_problem(k, h, MAX_CHUNK_BYTES)
            if problem:
                return None, f"{path.name}: refused before loading: {problem}"
            total += h.nbytes
        if total > MAX_CHUNK_BYTES:
            return None, (f"{path.name}: refused before loading: its arrays declare {total / 2**20:.0f} MiB, over "
                          f"{MAX_CHUNK_BYTES / 2**20:.0f} MiB")
        problem = chunk_problem(headers.keys(), headers, meta.get("neurons"), meta.get("frame_shape"), meta.get("extras"))
        if problem:
            return None, f"{path.name}: inconsistent: {problem}"
        rows = len(headers["number"])
        cap = chunk_rows(meta)
        if e is not None and isinstance(e.get("rows"), int) and rows != e["rows"]:
            return None, f"{path.name}: inconsistent: {rows} rows, the manifest says {e['rows']}"
        if cap is not None and rows > cap:
            return None, (f"{path.name}: inconsistent: {rows} rows, more than the {cap} a chunk holds "
                          f"(chunk_s x fps of session.json)")
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            arrays = {k: z[k] for k in (z.files if keys is None else keys)}
        if e is not None and "number" in arrays and rows and (
                int(arrays["number"][0]) != e.get("first") or int(arrays["number"][-1]) != e.get("last")):
            return None, (f"{path.name}: inconsistent: frames {int(arrays['number'][0])}..{int(arrays['number'][-1])}, "
                          f"the manifest says {e.get('first')}..{e.get('last')}")
    except Exception as exc:  # noqa: BLE001 -- any unreadable chunk is reported, never raised
        return None, f"{path.name}: damaged ({type(exc).__name__}: {str(exc)[:100]})"
    return arrays, None


def read_session(folder: str | Path, skip: tuple[str, ...] = ("raw",)) -> dict:
    """Load a session folder: {'meta', 'end' (None if killed), 'triggers', arrays concatenated over
    the chunks that are whole and consistent (with `decoded_valid` for every row: derived from NaN
    rows in sessions recorded before it; the arrays named in `skip` left out: raw frames are GBs,
    read them chunk by chunk with rtdecode.offline.session_chunks), 'damaged': list of problems, 'missing_chunks',
    'unfinished_chunks' (.tmp leftovers), 'status'}. RecordError if it is not a session at all;
    anything else wrong is reported in 'damaged', never raised. Chunks are checked by `load_chunk`."""
    scan = scan_session(folder)
    damaged = list(scan["damaged"])
    parts: dict[str, list] = {}
    for path in scan["files"]:
        arrays, problem = load_chunk(path, scan)
        if problem:
            damaged.append(problem)
            continue
        for k, v in arrays.items():
            if k not in skip:
                parts.setdefault(k, []).append(v)
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    if "decoded" in arrays and "decoded_valid" not in arrays:  # recorded before the flag: NaN rows were the marker
        arrays["decoded_valid"] = ~np.isnan(arrays["decoded"]).reshape(len(arrays["decoded"]), -1).all(axis=1)
    return {"meta": scan["meta"], "end": scan["end"], "triggers": scan["triggers"], "arrays": arrays,
            "damaged": damaged, "missing_chunks": scan["missing_chunks"],
            "unfinished_chunks": scan["unfinished_chunks"], "status": scan["status"]}


def summarize(session: dict) -> dict:
    """What a session holds: duration, frames, triggers, gaps, the per-pixel uncertainty and the refined
    stream when recorded;
    `ok` False if anything is damaged or missing, or the session ended by an error."""
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
        **_uncertainty_summary(a, end),
        **_refined_summary(a, end),
    }


def _refined_summary(arrays: dict, end: dict | None) -> dict:
    """Sessions with the refined stream (the extras 'refined' / 'refined_of', rtdecode.live.refiner): how many
    refined frames were recorded, and the live quality from end.json ({} for other sessions)."""
    of = arrays.get("refined_of")
    if of is None:
        return {}
    live = (end or {}).get("refined") if isinstance(end, dict) else None
    return {"refined_frames": int((~np.isnan(of)).sum()),
            "refined_quality": live.get("quality") if isinstance(live, dict) else None}


def _uncertainty_summary(arrays: dict, end: dict | None) -> dict:
    """Sessions of a model with a fold ensemble (the extra 'uncertainty', (H, W) per frame): how many
    frames have one, their mean spread (0-255 scale), and the live calibration from end.json ({} for
    other sessions)."""
    u = arrays.get("uncertainty")
    if u is None:
        return {}
    ok = ~np.isnan(u).reshape(len(u), -1).any(axis=1) if len(u) else np.zeros(0, bool)
    live = (end or {}).get("uncertainty") if isinstance(end, dict) else None
    return {"uncertainty_frames": int(ok.sum()),
            "uncertainty_mean_spread": float(u[ok].mean()) if ok.any() else None,
            "uncertainty_calibration": live.get("calibration") if isinstance(live, dict) else None}
