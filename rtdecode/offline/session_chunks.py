"""A recorded session's chunks (rtdecode.outputs.record), checked once, then streamed one at a time.

`SessionChunks(folder)` reads the session through the same checked reader as `rtdecode inspect`
(rtdecode.outputs.session_reader: `scan_session`, then `load_chunk` per chunk: SHA-256 against the
manifest, sizes from the .npy headers before anything is decompressed, shapes, rows and frame range),
one chunk in memory at a time, so that a damaged chunk is found before anything is written.
`problems` is what `inspect` reports as damaged; a chunk that fails a check is left out (`damaged`).
It keeps the small per-frame arrays (SMALL), concatenated over the whole chunks: `number` (frames,)
acquisition frame counter, `t` (frames,) seconds on the sender's clock (Unix time), `shown` and
`target` (frames, 2) (trial, stimulus frame), `latency_s` (frames,) seconds. The large ones
(`decoded`, `stimulus` (frames, height, width), `activity` (frames, inputs), the `extras` such as
F, Fneu, dff (frames, ROIs) and shifts (frames, 2)) are read again chunk by chunk (`iter_key`), so
memory stays bounded by a chunk whatever the session's length. No pynwb here: the NWB writer is
rtdecode.offline.nwb_export.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from rtdecode.errors import RecordError
from rtdecode.outputs.session_reader import load_chunk, npy_header, scan_session

# Per-frame arrays every chunk holds (rtdecode.outputs.record.Recorder); the rest are `extras`.
SMALL = ("number", "t", "shown", "target", "latency_s")


class SessionChunks:
    """The chunks of a session folder, checked once, read again one at a time.

    Every chunk is checked and loaded once here (one chunk in memory at a time) so that a damaged
    chunk is found before writing starts; the small per-frame arrays (SMALL) are kept.
    `scan`: rtdecode.outputs.session_reader.scan_session's dict (meta, end, triggers, ...);
    `problems`: everything `rtdecode inspect` reports as damaged; `damaged`: [(chunk index, reason)]
    of the chunks left out; `missing`: chunk indices absent from the sequence.
    """

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.scan = scan_session(self.folder)
        self.problems: list[str] = list(self.scan["damaged"])
        self.paths: list[Path] = []
        self.index: list[int] = []  # chunk number of each readable chunk
        self.sizes: list[int] = []
        self.damaged: list[tuple[int, str]] = []
        self.specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.nonzero: dict[str, bool] = {}
        small: dict[str, list] = {k: [] for k in SMALL}
        for path in self.scan["files"]:
            try:
                k = int(path.stem)
            except ValueError:
                continue
            arrays, problem = load_chunk(path, self.scan)
            if problem is None:
                problem = self._check(arrays)
                if problem:
                    problem = f"{path.name}: inconsistent: {problem}"
            if problem:
                self.problems.append(problem)
                self.damaged.append((k, problem.removeprefix(f"{path.name}: ")))
                continue
            for name, a in arrays.items():
                self.nonzero[name] = self.nonzero.get(name, False) or bool(np.any(a))
            for name in SMALL:
                small[name].append(arrays[name])
            self.paths.append(path)
            self.index.append(k)
            self.sizes.append(len(arrays["number"]))
        self.small = {k: np.concatenate(v) if v else np.zeros(0) for k, v in small.items()}
        self.total = int(sum(self.sizes))
        last = max([k for k, _ in self.damaged] + self.index, default=-1)
        seen = set(self.index) | {k for k, _ in self.damaged}
        self.missing = [k for k in range(last + 1) if k not in seen]

    def _check(self, arrays: dict) -> str | None:
        """Same keys, types and row shapes as the first whole chunk (so the streamed datasets fit)."""
        if any(k not in arrays for k in SMALL):
            return f"lacks {sorted(set(SMALL) - set(arrays))}"
        n = len(arrays["number"])
        if not self.specs:
            self.specs = {k: (a.shape[1:], a.dtype) for k, a in arrays.items()}
        if set(arrays) != set(self.specs):
            return f"holds {sorted(arrays)}, the first chunk {sorted(self.specs)}"
        for k, a in arrays.items():
            if len(a) != n or (a.shape[1:], a.dtype) != self.specs[k]:
                return f"'{k}' is {a.dtype} {a.shape}, expected {self.specs[k][1]} {(n,) + self.specs[k][0]}"
        return None

    def iter_key(self, key: str, columns: slice | None = None):
        """Yield `key` of each readable chunk, in order (one chunk in memory at a time); `columns`:
        only these columns of its second axis. RecordError if a chunk changed since it was checked."""
        for path, n in zip(self.paths, self.sizes):
            try:
                with zipfile.ZipFile(path) as zf:
                    h = npy_header(zf, f"{key}.npy") if f"{key}.npy" in zf.namelist() else None
                    if h is None or (h.shape, h.dtype) != ((n,) + tuple(self.specs[key][0]), self.specs[key][1]):
                        raise ValueError(f"'{key}' is now {None if h is None else (h.dtype, h.shape)}")
                    with zf.open(f"{key}.npy") as fh:
                        a = np.lib.format.read_array(fh, allow_pickle=False)
            except Exception as exc:  # noqa: BLE001 -- changed under us: stop, never write a misaligned file
                raise RecordError(f"{path} changed while it was being exported ({exc}); run 'rtdecode inspect' "
                                  "on the session and export again") from None
            yield a if columns is None else a[:, columns]
