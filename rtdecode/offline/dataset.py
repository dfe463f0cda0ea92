"""Reading datasets in the Sensorium 2023 layout (docs/design.md 3.2), unchanged, validated.

mouse/
  data/videos/{trial}.npy        float32 (H=36, W=64, T), 0-255, 30 Hz, NaN-padded at the end
  data/responses/{trial}.npy     float32 (N, T), non-negative
  data/behavior/{trial}.npy      (2, T): pupil dilation, running speed
  data/pupil_center/{trial}.npy  (2, T)
  meta/trials/tiers.npy          one string per trial id ('train', 'oracle', ...)
  meta/neurons/unit_ids.npy, meta/neurons/cell_motor_coordinates.npy
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtdecode.errors import DatasetError


@dataclass
class Trial:
    """One trial, NaN padding removed. video (T, H, W) float32; responses (N, T); behavior (2, T);
    pupil_center (2, T)."""

    id: str
    tier: str
    video: np.ndarray
    responses: np.ndarray
    behavior: np.ndarray
    pupil_center: np.ndarray


def _load(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"missing file: {path}")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises several types for damaged files
        raise DatasetError(f"cannot read {path}: {exc}") from exc


class Dataset:
    """A mouse directory in the Sensorium 2023 layout. Trial ids are the file stems ('0', '1', ...)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DatasetError(f"dataset folder not found: {self.root}")
        tiers = _load(self.root / "meta" / "trials" / "tiers.npy")
        if tiers.ndim != 1:
            raise DatasetError(f"{self.root / 'meta/trials/tiers.npy'}: expected one string per trial, got shape {tiers.shape}")
        self.tiers = np.array([str(t) for t in tiers])
        self.ids = [str(i) for i in range(len(self.tiers))]
        unit_ids = _load(self.root / "meta" / "neurons" / "unit_ids.npy")
        self.n_neurons = int(unit_ids.shape[0])
        self.unit_ids = unit_ids
        if not self.ids:
            raise DatasetError(f"{self.root}: tiers.npy lists no trials")
        first = self.ids[0]
        v = _load(self._file("videos", first))
        if v.ndim != 3:
            raise DatasetError(f"{self._file('videos', first)}: expected (height, width, time), got shape {v.shape}")
        self.frame_shape = (int(v.shape[0]), int(v.shape[1]))

    def _file(self, kind: str, trial: str) -> Path:
        return self.root / "data" / kind / f"{trial}.npy"

    def trials(self, tiers: str | tuple[str, ...] | list[str]) -> list[str]:
        """Trial ids whose tier is one of `tiers`."""
        tiers = (tiers,) if isinstance(tiers, str) else tuple(tiers)
        return [i for i, t in zip(self.ids, self.tiers) if t in tiers]

    def require(self, tier: str) -> list[str]:
        """Trial ids of `tier`; DatasetError if there are none."""
        ids = self.trials(tier)
        if not ids:
            present = sorted(set(self.tiers.tolist()))
            raise DatasetError(f"{self.root}: no '{tier}' trials (tiers present: {', '.join(present)})")
        return ids

    def load(self, trial: str) -> Trial:
        """Load and validate one trial; trailing NaN padding is cut off."""
        video = _load(self._file("videos", trial))
        resp = _load(self._file("responses", trial))
        beh = _load(self._file("behavior", trial))
        pup = _load(self._file("pupil_center", trial))
        if video.ndim != 3 or video.shape[:2] != self.frame_shape:
            raise DatasetError(f"{self._file('videos', trial)}: expected shape {self.frame_shape + ('T',)}, got {video.shape}")
        T = video.shape[2]
        if resp.ndim != 2 or resp.shape != (self.n_neurons, T):
            raise DatasetError(
                f"{self._file('responses', trial)}: expected shape ({self.n_neurons}, {T}) "
                f"(neurons from unit_ids.npy, frames from the video), got {resp.shape}"
            )
        for arr, kind in ((beh, "behavior"), (pup, "pupil_center")):
            if arr.shape != (2, T):
                raise DatasetError(f"{self._file(kind, trial)}: expected shape (2, {T}), got {arr.shape}")
        valid = ~np.isnan(video).all(axis=(0, 1)) & ~np.isnan(resp).all(axis=0)
        n = int(valid.size - np.argmax(valid[::-1])) if valid.any() else 0
        return Trial(
            id=trial,
            tier=str(self.tiers[int(trial)]),
            video=np.ascontiguousarray(np.moveaxis(video[:, :, :n], 2, 0), dtype=np.float32),
            responses=np.nan_to_num(resp[:, :n].astype(np.float32)),
            behavior=np.nan_to_num(beh[:, :n].astype(np.float32)),
            pupil_center=np.nan_to_num(pup[:, :n].astype(np.float32)),
        )

    def modality(self, trials: int = 3) -> str:
        """"spikes" when the responses of the first `trials` train trials are non-negative whole
        numbers (spike counts per frame: sorted units, threshold crossings), else "calcium"
        (deconvolved or dF/F activity, which is never all whole numbers)."""
        ids = self.require("train")[:trials]
        for i in ids:
            r = self.load(i).responses
            r = r[np.isfinite(r)]
            if r.size == 0 or r.min() < 0 or not np.array_equal(r, np.round(r)):
                return "calcium"
        return "spikes" if ids else "calcium"

    def evaluation_mask(self) -> np.ndarray | None:
        """(H, W) bool from the optional `meta/evaluation_mask.npy`, else None (score the full frame)."""
        path = self.root / "meta" / "evaluation_mask.npy"
        if not path.is_file():
            return None
        mask = _load(path).astype(bool)
        if mask.shape != self.frame_shape:
            raise DatasetError(f"{path}: shape {mask.shape} differs from the frame shape {self.frame_shape}")
        return mask

    def video_length(self, trial: str) -> int:
        """Frames in the video file, NaN padding included."""
        return int(np.load(self._file("videos", trial), mmap_mode="r").shape[2])


def write_trial(root: Path, trial: str, video: np.ndarray, responses: np.ndarray,
                behavior: np.ndarray, pupil_center: np.ndarray) -> None:
    """Write one trial in the layout; `video` is (T, H, W) and is stored as (H, W, T)."""
    for kind, arr in (("videos", np.moveaxis(video, 0, 2)), ("responses", responses),
                      ("behavior", behavior), ("pupil_center", pupil_center)):
        d = root / "data" / kind
        d.mkdir(parents=True, exist_ok=True)
        np.save(d / f"{trial}.npy", np.ascontiguousarray(arr, dtype=np.float32))


def write_meta(root: Path, tiers: list[str], n_neurons: int, coordinates: np.ndarray) -> None:
    (root / "meta" / "trials").mkdir(parents=True, exist_ok=True)
    (root / "meta" / "neurons").mkdir(parents=True, exist_ok=True)
    np.save(root / "meta" / "trials" / "tiers.npy", np.array(tiers, dtype="<U16"))
    np.save(root / "meta" / "neurons" / "unit_ids.npy", np.arange(n_neurons, dtype=np.int64))
    np.save(root / "meta" / "neurons" / "cell_motor_coordinates.npy", coordinates.astype(np.int64))
