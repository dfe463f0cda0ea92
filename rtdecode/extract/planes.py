"""Channel, plane and scan-ROI selection, and one extraction chain per field of a volume.

A two-photon source sends every channel, plane and ROI of a multi-ROI (mesoscope) scan as its own
`frame` message (rtframe header `channel`, `plane`, `roi`; ScanImage numbers all three from 1; a
header without `roi` is ROI 1). `Planes` decides which frames feed extraction: one channel, the
listed planes and the listed scan ROIs (default: ROI 1 only, as before multi-ROI support); any other
frame is ignored, and the caller counts it under the reason `ignore()` gives (`other_channel`,
`other_plane`, `other_roi`).

A field is one (plane, scan ROI) pair: its own cells, its own chain (registration to its own
reference, traces, dF/F, deconvolution). The fields are ordered plane-major, then scan ROI:
(p1, r1), (p1, r2), ..., (p2, r1), (p2, r2), ... -- the order ScanImage acquires them (all ROIs of
a plane in one frame, then the next plane). `add(plane, frame, roi)` runs the field's chain and, on
the frame of the last field, returns the volume's activity vector: the fields' activities one after
the other in that order, each in its own cell order. A volume in which a field's frame never arrived
still goes out (that field keeps its previous activity) and is counted in `incomplete`.
"""

from __future__ import annotations

import numpy as np

from rtdecode.errors import ConfigError, StageError
from rtdecode.stage import Chain

REASONS = ("other_channel", "other_plane", "other_roi")
ORDER = "plane, then scan ROI, then cell"


def fields_of(planes: list[int], scan_rois: list[int]) -> list[tuple[int, int]]:
    """The (plane, scan ROI) fields in the activity vector's order: plane-major, then ROI."""
    return [(int(p), int(r)) for p in planes for r in scan_rois]


def field_name(plane: int, roi: int, multi_roi: bool) -> str:
    """'plane{p}' (one scan ROI, as before) or 'plane{p}_roi{r}': file and stage-timing names."""
    return f"plane{plane}_roi{roi}" if multi_roi else f"plane{plane}"


def _increasing(what: str, values: list[int]) -> list[int]:
    values = [int(v) for v in values]
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise ConfigError(f"{what} must be listed once each, increasing; got {values}")
    return values


class Planes:
    """Frame selection (`channel`, `planes`, `scan_rois`) and, when `chains` is given, one chain per
    field (plane-major, then scan ROI: see `fields_of`)."""

    def __init__(self, channel: int, planes: list[int], chains: list[Chain] | None = None,
                 scan_rois: list[int] = (1,)):
        planes = _increasing("planes", planes)
        scan_rois = _increasing("scan_rois", scan_rois)
        self.fields = fields_of(planes, scan_rois)
        if chains is not None and len(chains) != len(self.fields):
            raise ConfigError(f"{len(planes)} plane(s) {planes} x {len(scan_rois)} scan ROI(s) {scan_rois} need "
                              f"{len(self.fields)} extraction chains, got {len(chains)}")
        self.channel, self.planes, self.scan_rois, self.chains = int(channel), planes, scan_rois, chains
        self.multi_roi = scan_rois != [1]
        self.index = {f: i for i, f in enumerate(self.fields)}
        self.incomplete = 0  # volumes sent with a field missing
        if chains is not None:
            sizes = []
            for (p, r), c in zip(self.fields, chains):
                spec = c.out_spec
                if len(spec.shape) != 1:
                    raise StageError(f"{field_name(p, r, self.multi_roi)}: the extraction chain gives {spec}, "
                                     "expected one activity vector")
                sizes.append(int(spec.shape[0]))
            self.sizes = sizes
            self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
            self.activity = np.zeros(int(self.offsets[-1]), np.float32)
            self._seen = [False] * len(self.fields)

    @property
    def n(self) -> int:
        """Neurons of the volume's activity vector (with chains)."""
        return int(self.offsets[-1])

    def names(self) -> list[str]:
        return [field_name(p, r, self.multi_roi) for p, r in self.fields]

    def order(self) -> dict:
        """The activity vector's layout, for session.json / the dataset's meta: the order and, per
        field, its plane, scan ROI and its columns [start, stop)."""
        out = {"order": ORDER, "planes": self.planes, "scan_rois": self.scan_rois,
               "fields": [{"plane": p, "scan_roi": r} for p, r in self.fields]}
        if self.chains is not None:
            for f, a, b in zip(out["fields"], self.offsets[:-1], self.offsets[1:]):
                f["columns"] = [int(a), int(b)]
        return out

    def ignore(self, header: dict) -> str | None:
        """Why a frame with this header is not extracted (one of REASONS), or None to extract it."""
        if header.get("channel") != self.channel:
            return "other_channel"
        if header.get("plane") not in self.planes:
            return "other_plane"
        if header.get("roi", 1) not in self.scan_rois:
            return "other_roi"
        return None

    def add(self, plane: int, frame: np.ndarray, roi: int = 1) -> np.ndarray | None:
        """Extract `frame` of (`plane`, `roi`); the volume's activity vector on the last field, else None."""
        i = self.index[(plane, roi)]
        out = self.chains[i].process(frame)
        self.activity[self.offsets[i]:self.offsets[i + 1]] = out
        self._seen[i] = True
        if i != len(self.fields) - 1:
            return None
        if not all(self._seen):
            self.incomplete += 1
        self._seen = [False] * len(self.fields)
        return self.activity

    def warm_up(self) -> None:
        for c in self.chains or ():
            c.warm_up()

    def time_stages(self) -> None:
        for c in self.chains or ():
            c.time_stages()

    def stage_summary_ms(self) -> dict:
        """{'plane{p}.{stage}' (or 'plane{p}_roi{r}.{stage}' in a multi-ROI scan): {p50, p99, max, n}}
        of every field's chain."""
        out = {}
        for name, c in zip(self.names(), self.chains or ()):
            out |= {f"{name}.{k}": v for k, v in c.stage_summary_ms().items()}
        return out
