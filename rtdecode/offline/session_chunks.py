"""A recorded session's chunks (rtdecode.outputs.record), checked once, then streamed one at a time.

`SessionChunks(folder)` reads every `chunks/NNNNNN.npz` once, one chunk in memory at a time, so that
a damaged chunk is found before anything is written; it keeps the small per-frame arrays (SMALL),
concatenated over the readable chunks: `number` (frames,) acquisition frame counter, `t` (frames,)
seconds on the sender's clock (Unix time), `shown` and `target` (frames, 2) (trial, stimulus frame),
`latency_s` (frames,) seconds. The large ones (`decoded`, `stimulus` (frames, height, width),
`activity` (frames, inputs), the `extras` such as F, Fneu, dff (frames, ROIs) and shifts (frames, 2))
are read again chunk by chunk (`iter_key`), so memory stays bounded by a chunk whatever the
session's length. No pynwb here: the NWB writer is rtdecode.offline.nwb_export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# Per-frame arrays every chunk holds (rtdecode.outputs.record.Recorder); the rest are `extras`.
SMALL = ("number", "t", "shown", "target", "latency_s")


class SessionChunks:
    """The chunks of a session folder, checked once, read again one at a time.

    Every array of every chunk is loaded once here (one chunk in memory at a time) so that a
    damaged chunk is found before writing starts; the small per-frame arrays (SMALL) are kept.
    `damaged`: [(chunk index, reason)]; `missing`: chunk indices absent from the sequence.
    """

    def __init__(self, folder: Path):
        self.folder = folder
        self.paths: list[Path] = []
        self.index: list[int] = []  # chunk number of each readable chunk
        self.sizes: list[int] = []
        self.damaged: list[tuple[int, str]] = []
        self.specs: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
        self.nonzero: dict[str, bool] = {}
        small: dict[str, list] = {k: [] for k in SMALL}
        for path in sorted((folder / "chunks").glob("*.npz")):
            try:
                k = int(path.stem)
            except ValueError:
                continue
            try:
                with np.load(path, allow_pickle=False) as z:
                    arrays = {name: z[name] for name in z.files}
            except Exception as exc:  # noqa: BLE001 -- a truncated or corrupt chunk: report it, go on
                self.damaged.append((k, f"unreadable ({type(exc).__name__}: {exc})"))
                continue
            problem = self._check(arrays)
            if problem:
                self.damaged.append((k, problem))
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
        if "number" not in arrays or any(k not in arrays for k in SMALL):
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

    def iter_key(self, key: str):
        """Yield `key` of each readable chunk, in order (one chunk in memory at a time)."""
        for path in self.paths:
            with np.load(path, allow_pickle=False) as z:
                yield z[key]

