"""Crash-safe session recording.

A session is a folder:

  session.json          what was run: config, model card, start time, rtdecode version (written once)
  chunks/000000.npz     one chunk per second of data (activity, decoded frames, alignment, latencies,
                        and the `extras` the live loop taps, e.g. F, Fneu, dff, motion shifts)
  rois.npz              (two-photon) the ROI and neuropil masks and registration reference used live
  triggers.jsonl        one line per trigger, flushed and fsynced as it happens
  manifest.jsonl        one line per chunk as it lands: file, SHA-256, rows, frame range, keys and shapes
  status.json           'recording' at the start, then 'stopped', 'error' or 'damaged' (a file of
                        fixed size, allocated at the start and rewritten in place: it can be updated
                        on a full disk)
  end.json              written on a stop (its absence means the session was killed); `ended_by`
                        'stop' or 'error', `stop_reason` (e.g. 'signal SIGTERM': `rtdecode run`
                        stops cleanly on SIGTERM / SIGINT), `damaged` when recording failed,
                        `chunks` the manifest

Each chunk is written to a temporary file, fsynced and renamed, so a chunk on disk is always whole:
after `kill -9` at most the last second (the chunk being gathered) is missing. Writing happens on a
background thread; the live loop only copies a frame's arrays into the open chunk. The queue of
chunks waiting for the disk is bounded (`max_backlog`): when it is full the live loop waits (records
are never dropped to keep up; the time waited is `blocked_s`). A chunk that cannot be written for
a transient reason (TRANSIENT: no free file descriptor, e.g. a connection flood on a published
port, or no memory) is retried with backoff while it waits at the head of the queue; only when the
queue behind it is full (or at close, after `retry_s`) is it given up: its records are counted in
`lost`, the session is marked damaged, and the next chunk is tried as usual: recording never stops
for good on a transient error (end.json `transient_errors`, `chunks_given_up`). The files the
recorder keeps open for the whole session (manifest.jsonl, triggers.jsonl) are opened at the start,
so a lack of descriptors later never costs them. A session folder deleted during the session is
made again and recording goes on in it; what went with the old one is counted lost and end.json
lists its chunks, which `inspect` reports missing (`folder_deleted`; a trigger line is never
written into a deleted file). Any other error (disk full) stops the recording: the chunk and every
later record are counted in `lost`, the session is marked damaged (status.json), and the live loop
goes on decoding. Nothing is pickled: chunks are plain .npz, read with allow_pickle=False.

Times, per frame: `t` is the frame's time as its sender stamped it (ScanImage's clock; the same
`t` as on the wire and in triggers.jsonl's `t_frame`), `local_t` the same moment on this PC's wall
clock (`t` + the sender's offset as estimated live, rtdecode.sources.clock), `shown_t` the local
time at which the stimulus frame `shown` started (its corrected sender time, or its TTL edge with
hardware flip times; NaN if none). `shown` and `target` were matched on local times. To re-align
offline: `local_t - t` is the imaging PC's offset row by row, `shown_t` puts each stimulus frame on
the same clock, and end.json's `clock` (per publisher: offset_ms, jitter_ms) and `flips` (display
latency) say how good that was. Sessions recorded before `local_t` / `shown_t` existed lack them
(OPTIONAL_KEYS); they read as before.

Reading a session back, checked against its manifest: rtdecode.outputs.session_reader.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import queue
import threading
import time
from pathlib import Path

import numpy as np

import rtdecode
from rtdecode.errors import RecordError

log = logging.getLogger(__name__)

FORMAT = "rtdecode-session"
KEYS = ("number", "t", "activity", "decoded", "shown", "target", "latency_s", "stimulus", "local_t", "shown_t",
        "decoded_valid")
# keys absent from sessions recorded before them, by generation (a chunk has all of a group or none)
OPTIONAL_GROUPS = (("local_t", "shown_t"), ("decoded_valid",))
OPTIONAL_KEYS = tuple(k for g in OPTIONAL_GROUPS for k in g)
STATUS_BYTES = 4096
# errors that go away by themselves (descriptors or memory freed): a chunk is retried, never given up at once
TRANSIENT = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS, errno.EAGAIN, errno.EINTR})
RETRY_S = (0.02, 1.0)  # backoff between tries of a chunk: from, doubling up to


def _write_status(path: Path, status: dict) -> None:
    """Rewrite the fixed-size status file in place (no new disk blocks needed)."""
    text = json.dumps(status).encode()[: STATUS_BYTES - 1]
    with open(path, "r+b" if path.exists() else "wb") as fh:
        fh.write(text.ljust(STATUS_BYTES, b" "))
        fh.flush()
        os.fsync(fh.fileno())


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        write(fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _savez_deflated(fh, arrays: dict, level: int) -> None:
    """np.savez_compressed at a chosen zlib level (numpy's own uses zipfile's default, 6: too slow for
    raw frames at 30 Hz); the same .npz layout, read by np.load."""
    import zipfile

    with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for name, a in arrays.items():
            with zf.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(a), allow_pickle=False)


def git_commit() -> str | None:
    """The git commit of the rtdecode source in use (None outside a git checkout)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(Path(rtdecode.__file__).parent), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


class Recorder:
    """Gathers per-frame records into one-second chunks and writes them on a background thread.

    `add(number, t, activity (N,), decoded (H, W) or None, shown, target, latency_s, stimulus)` copies
    into the open chunk (shown/target: (trial, stimulus frame) on screen at this bin / of the decoded
    frame, (-1, -1) if unknown; decoded None while the window is not yet full: `decoded_valid`
    False and the row NaN (NaN is never the marker: a decoded NaN keeps `decoded_valid` True);
    stimulus: the (H, W) image on screen at this bin when the stimulus stream carries it, else 0;
    keywords `local_t` / `shown_t`: the frame's time and its shown stimulus's start on this PC's wall
    clock, NaN if not given: see the module doc);
    `trigger(dict)` is written through at once. `close()` flushes everything and writes end.json.
    extras: more per-frame arrays, {name: (shape, dtype)} (e.g. 'F': ((n,), 'float32')), given to
    `add(..., extras={name: array})`; one missing from a frame is stored as NaN (floats) or 0.
    `attach(name, arrays)` writes a whole-session file name.npz (e.g. the ROI masks).
    compress_level: None writes chunks uncompressed (np.savez); 1-9 deflates them at that zlib level
    (raw frames: rig file `outputs.raw_frames`); np.load reads both.
    """

    def __init__(self, folder: str | Path, n_neurons: int, frame_shape: tuple[int, int],
                 meta: dict | None = None, chunk_s: float = 1.0, fps: float = 30.0, max_backlog: int = 30,
                 extras: dict[str, tuple[tuple[int, ...], str]] | None = None, retry_s: float = 10.0,
                 compress_level: int | None = None):
        self.extras = {k: (tuple(int(d) for d in shape), np.dtype(dt)) for k, (shape, dt) in (extras or {}).items()}
        if compress_level is not None and not (isinstance(compress_level, int) and 1 <= compress_level <= 9):
            raise RecordError(f"compress_level must be a whole number 1-9 or None, got {compress_level!r}")
        self.compress_level = compress_level
        clash = set(self.extras) & set(KEYS)
        if clash:
            raise RecordError(f"extras {sorted(clash)} would overwrite the recorder's own arrays; rename them")
        self.folder = Path(folder)
        try:
            (self.folder / "chunks").mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise RecordError(f"{self.folder} already holds a session; choose a new --record path") from None
        except OSError as exc:
            raise RecordError(f"cannot create the session folder {self.folder}: {exc}") from None
        info = {"format": FORMAT, "version": 1, "rtdecode_version": rtdecode.__version__,
                "rtdecode_commit": git_commit(),
                "started": time.time(), "neurons": n_neurons, "frame_shape": list(frame_shape),
                "chunk_s": chunk_s, "fps": fps,
                "extras": {k: {"shape": list(sh), "dtype": dt.str} for k, (sh, dt) in self.extras.items()},
                **(meta or {})}
        _atomic_write(self.folder / "session.json", lambda fh: fh.write(json.dumps(info, indent=2).encode()))
        self._info = info
        self._status_path = self.folder / "status.json"
        _write_status(self._status_path, {"state": "recording"})
        self.failed: str | None = None  # why recording stopped (disk full, ...), None while it works
        self.manifest: list[dict] = []
        self._manifest = open(self.folder / "manifest.jsonl", "ab")
        self.cap = max(1, int(round(chunk_s * fps)))
        self.n, self.shape = n_neurons, tuple(frame_shape)
        self._new_chunk()
        self.chunk_index = 0
        self.chunk_started = time.monotonic()
        self.chunk_s = chunk_s
        self.records = 0
        self.written = 0
        self.errors = 0  # write errors (chunks and trigger lines)
        self.lost = 0  # records in chunks that could not be written
        self.lost_triggers = 0
        self.blocked_s = 0.0  # time the live loop waited for a full queue
        self.transient_errors = 0  # tries of a chunk that failed for a TRANSIENT reason
        self.gave_up: list[str] = []  # chunks given up after transient errors (why, per chunk; bounded)
        self.retry_s = retry_s  # how long a chunk is retried at close
        self._closing = False
        self.backlog_max = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, max_backlog))
        self._triggers = open(self.folder / "triggers.jsonl", "ab")
        self.trigger_lines = 0  # trigger lines in the session folder's triggers.jsonl
        self.folder_deleted = 0  # times the session folder was found deleted (and made again)
        self.deleted_reason: str | None = None
        self._folder_lock = threading.Lock()  # the manifest file, and making the folder again
        self._triggers_lock = threading.Lock()  # the triggers file
        self._thread = threading.Thread(target=self._writer, name="recorder", daemon=True)
        self._thread.start()

    def _new_chunk(self) -> None:
        c = self.cap
        self.buf = {
            "number": np.zeros(c, np.int64), "t": np.zeros(c, np.float64),
            "activity": np.zeros((c, self.n), np.float32), "decoded": np.zeros((c,) + self.shape, np.float32),
            "shown": np.zeros((c, 2), np.int64), "target": np.zeros((c, 2), np.int64),
            "latency_s": np.zeros(c, np.float64), "stimulus": np.zeros((c,) + self.shape, np.uint8),
            "local_t": np.zeros(c, np.float64), "shown_t": np.zeros(c, np.float64),
            "decoded_valid": np.zeros(c, bool),
        }
        for k, (shape, dt) in self.extras.items():
            self.buf[k] = np.zeros((c,) + shape, dt)
        self.fill = 0

    def add(self, number: int, t: float, activity: np.ndarray, decoded: np.ndarray | None,
            shown: tuple[int, int], target: tuple[int, int], latency_s: float,
            stimulus: np.ndarray | None = None, extras: dict[str, np.ndarray] | None = None,
            local_t: float = float("nan"), shown_t: float = float("nan")) -> None:
        if self.failed is not None:  # recording stopped: count, never block or buffer
            self.records += 1
            self.lost += 1
            return
        b, i = self.buf, self.fill
        for k, (_, dt) in self.extras.items():
            v = None if extras is None else extras.get(k)
            if v is not None:
                b[k][i] = v
            else:
                b[k][i] = np.nan if dt.kind == "f" else 0
        if stimulus is not None and stimulus.shape == self.shape:
            b["stimulus"][i] = stimulus
        else:
            b["stimulus"][i] = 0
        b["number"][i], b["t"][i], b["latency_s"][i] = number, t, latency_s
        b["local_t"][i], b["shown_t"][i] = local_t, shown_t
        b["shown"][i], b["target"][i] = shown, target
        b["activity"][i] = activity
        b["decoded_valid"][i] = decoded is not None
        if decoded is None:
            b["decoded"][i] = np.nan  # kept for readers of the decoded video; the flag is `decoded_valid`
        else:
            b["decoded"][i] = decoded
        self.fill += 1
        self.records += 1
        if self.fill == self.cap or time.monotonic() - self.chunk_started >= self.chunk_s:
            self.flush()

    def flush(self) -> None:
        """Hand the open chunk to the writer thread and start a new one."""
        if self.fill:
            item = (self.chunk_index, {k: v[: self.fill] for k, v in self.buf.items()})
            try:
                self._queue.put_nowait(item)
            except queue.Full:  # the disk is behind: wait for it rather than drop records
                t0 = time.perf_counter()
                self._queue.put(item)
                self.blocked_s += time.perf_counter() - t0
            self.backlog_max = max(self.backlog_max, self._queue.qsize())
            self.chunk_index += 1
            self._new_chunk()
        self.chunk_started = time.monotonic()

    def attach(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """Write `arrays` to name.npz in the session folder now (atomically; no pickle)."""
        if not name.isidentifier() or name in ("session", "end", "triggers"):
            raise RecordError(f"cannot attach {name!r}: use a plain name other than session, end, triggers")
        try:
            _atomic_write(self.folder / f"{name}.npz", lambda fh: np.savez(fh, **arrays))
        except OSError as exc:
            self.errors += 1
            log.error("could not write %s.npz to %s: %s", name, self.folder, exc)

    def trigger(self, event: dict) -> None:
        """Write one trigger event through to disk now (never buffered)."""
        try:
            with self._triggers_lock:
                gone = os.fstat(self._triggers.fileno()).st_nlink == 0
            if gone:  # deleted with its folder: never write into the void
                self._folder_gone()
            with self._triggers_lock:  # the writer thread may replace the file (_folder_gone)
                self._triggers.write((json.dumps(event) + "\n").encode())
                self._triggers.flush()
                os.fsync(self._triggers.fileno())
                self.trigger_lines += 1
        except OSError as exc:
            self.errors += 1
            self.lost_triggers += 1
            log.error("could not record trigger %s: %s", event, exc)

    def _writer(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            index, arrays = item
            path = self.folder / "chunks" / f"{index:06d}.npz"
            rows = len(arrays["number"])
            if self.failed is not None:
                self.lost += rows
                continue
            try:
                self._write_retrying(path, arrays)
            except Exception as exc:  # noqa: BLE001 -- disk full, folder removed, anything: stop recording,
                # count what is lost, mark the session damaged; the live loop goes on decoding
                self.errors += 1
                self.lost += rows
                transient = isinstance(exc, OSError) and exc.errno in TRANSIENT
                reason = f"{type(exc).__name__}: {exc}"
                if transient:  # given up (the queue behind it was full): this chunk only
                    if len(self.gave_up) < 100:
                        self.gave_up.append(f"{path.name}: {reason}")
                    log.error("gave up writing %s after transient errors (%d records lost): %s; recording goes on "
                              "with the next chunk", path, rows, exc)
                else:
                    self.failed = reason
                    log.error("could not write %s (%d records lost): %s; recording stopped, decoding goes on",
                              path, rows, exc)
                try:
                    path.with_name(path.name + ".tmp").unlink(missing_ok=True)
                    _write_status(self._status_path, {"state": "damaged", "reason": reason, "chunk": path.name})
                except OSError:
                    pass

    def _write_retrying(self, path: Path, arrays: dict) -> None:
        """Write one chunk, retrying TRANSIENT errors with backoff while the queue behind it has room
        (at close: for `retry_s`), and once after making the session folder again if it was deleted;
        the last error is raised when it is given up."""
        delay, first, remade = RETRY_S[0], None, False
        while True:
            try:
                self._write_chunk(path, arrays)
                if first is not None:
                    log.warning("wrote %s after %.1f s of transient errors", path.name, time.monotonic() - first)
                return
            except OSError as exc:
                if exc.errno == errno.ENOENT and not remade and not (self.folder / "chunks").is_dir():
                    remade = True
                    self._folder_gone()
                    continue
                if exc.errno not in TRANSIENT:
                    raise
                self.transient_errors += 1
                if first is None:
                    first = time.monotonic()
                    log.warning("could not write %s (%s): retrying", path.name, exc)
                full = self._queue.qsize() >= max(1, self._queue.maxsize - 1)  # give up before the live loop waits
                if full or (self._closing and time.monotonic() - first > self.retry_s):
                    raise
                time.sleep(delay)
                delay = min(2 * delay, RETRY_S[1])

    def _folder_gone(self) -> None:
        """The session folder (or its files) was deleted during the session: make it again, with
        session.json, a new manifest.jsonl and triggers.jsonl, and status.json 'damaged', so that the
        records still to come are kept and `inspect` names what was lost (end.json lists the deleted
        chunks, which read as missing). What was on disk is counted lost: its records in `lost` (no
        longer `written`), its trigger lines in `lost_triggers`. Raises OSError if it cannot."""
        with self._folder_lock:
            with self._triggers_lock:
                there = (self.folder / "chunks").is_dir() and os.fstat(self._triggers.fileno()).st_nlink > 0
            if there:
                return  # made again by the other thread already
            (self.folder / "chunks").mkdir(parents=True, exist_ok=True)
            self.folder_deleted += 1
            info = {**self._info, "folder_deleted": self.folder_deleted}
            _atomic_write(self.folder / "session.json", lambda fh: fh.write(json.dumps(info, indent=2).encode()))
            gone = sum(e["rows"] for e in self.manifest if not e.get("deleted"))
            for e in self.manifest:
                e["deleted"] = True
            self.written -= gone
            self.lost += gone
            self.errors += 1
            try:
                self._manifest.close()
            except OSError:
                pass
            self._manifest = open(self.folder / "manifest.jsonl", "ab")
            with self._triggers_lock:  # lock order: _folder_lock, then _triggers_lock
                self.lost_triggers += self.trigger_lines
                self.trigger_lines = 0
                try:
                    self._triggers.close()
                except OSError:
                    pass
                self._triggers = open(self.folder / "triggers.jsonl", "ab")
            self.deleted_reason = (f"the session folder was deleted during the session ({self.folder_deleted} time(s)): "
                                   f"{gone} records and the trigger lines before it lost; recording went on in a new one")
            _write_status(self._status_path, {"state": "damaged", "reason": self.deleted_reason})
            log.error("%s: %s", self.folder, self.deleted_reason)

    def _write_chunk(self, path: Path, arrays: dict) -> None:
        rows = len(arrays["number"])
        buf = io.BytesIO()
        if self.compress_level is None:
            np.savez(buf, **arrays)
        else:
            _savez_deflated(buf, arrays, self.compress_level)
        data = buf.getbuffer()
        try:
            _atomic_write(path, lambda fh: fh.write(data))
        except OSError:
            try:
                path.with_name(path.name + ".tmp").unlink(missing_ok=True)
            except OSError:
                pass
            raise
        entry = {"file": path.name, "sha256": hashlib.sha256(data).hexdigest(), "rows": rows,
                 "first": int(arrays["number"][0]), "last": int(arrays["number"][-1]),
                 "shapes": {k: list(v.shape) for k, v in arrays.items()}}
        with self._folder_lock:  # _folder_gone (another thread) may replace the manifest file
            self._manifest.write((json.dumps(entry) + "\n").encode())
            self._manifest.flush()
            os.fsync(self._manifest.fileno())
            self.manifest.append(entry)
            self.written += rows

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    def close(self, stats: dict | None = None, error: str | None = None, reason: str | None = None) -> None:
        """Flush, then write end.json; `error` says the session ended by an error (not a clean stop);
        `reason` why a clean stop happened when it was asked for (e.g. 'signal SIGTERM'): end.json's
        `stop_reason` and status.json's `reason`."""
        self.flush()
        self._closing = True
        self._queue.put(None)
        self._thread.join()
        try:  # deleted after the last chunk: made again, so that end.json says what was lost
            if not (self.folder / "chunks").is_dir() or os.fstat(self._manifest.fileno()).st_nlink == 0:
                self._folder_gone()
        except OSError as exc:
            log.error("%s was deleted and cannot be made again: %s", self.folder, exc)
        self._triggers.close()
        self._manifest.close()
        end = {**(stats or {}), "stopped": time.time(), "records": self.records, "written": self.written,
               "write_errors": self.errors, "lost_records": self.lost, "lost_triggers": self.lost_triggers,
               "ended_by": "error" if error else "stop", "error": error, "stop_reason": reason,
               "damaged": self.failed or self.deleted_reason or ("; ".join(self.gave_up[:5]) if self.gave_up else None),
               "folder_deleted": self.folder_deleted,
               "transient_errors": self.transient_errors, "chunks_given_up": len(self.gave_up),
               "chunks": self.manifest}
        if stats is not None and "recorded" in stats:  # the session's stats were taken before this last flush
            end.update(recorded=self.written, record_errors=self.errors, records_lost=self.lost, record_backlog=0)
        if self.lost or self.lost_triggers:
            log.error("session %s: %d of %d records and %d trigger lines could not be written", self.folder,
                      self.lost, self.records, self.lost_triggers)
        state = "damaged" if (self.failed or self.lost or self.lost_triggers) else "error" if error else "stopped"
        try:
            _atomic_write(self.folder / "end.json", lambda fh: fh.write(json.dumps(end, indent=2).encode()))
        except OSError as exc:
            log.error("could not write %s/end.json: %s", self.folder, exc)
            state = "damaged"
            try:
                (self.folder / "end.json.tmp").unlink(missing_ok=True)
            except OSError:
                pass
        try:
            why = self.failed or self.deleted_reason or (self.gave_up[0] if self.gave_up else None) or error or reason
            _write_status(self._status_path, {"state": state, "reason": why, "records": self.records,
                                              "lost_records": self.lost})
        except OSError as exc:
            log.error("could not update %s: %s", self._status_path, exc)


def rois_npz(rois, reference: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The arrays of rois.npz for `rois` (rtdecode.extract.rois.Rois: CSR footprints and neuropil over
    the flattened (H, W) frame): `roi_indptr/indices/weights`, `neuropil_indptr/indices/weights`,
    `frame_shape`, `index` and, when given, the registration `reference` image (H, W)."""
    out = {}
    for key, m in (("roi", rois.footprints), ("neuropil", rois.neuropil)):
        m = m.tocsr()
        out |= {f"{key}_indptr": m.indptr.astype(np.int64), f"{key}_indices": m.indices.astype(np.int64),
                f"{key}_weights": m.data.astype(np.float32)}
    out |= {"frame_shape": np.asarray(rois.frame_shape, np.int64), "index": np.asarray(rois.index, np.int64)}
    if reference is not None:
        out["reference"] = np.asarray(reference, np.float32)
    return out
