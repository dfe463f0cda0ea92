"""Channel and plane selection, and one extraction chain per plane of a volume.

A two-photon source sends every channel and every plane as its own `frame` message (rtframe header
`channel`, `plane`; ScanImage numbers both from 1). `Planes` decides which frames feed extraction:
one channel, and the listed planes; any other frame is ignored, and the caller counts it under the
reason `ignore()` gives (`other_channel`, `other_plane`, `other_roi`: a multi-ROI scan's ROIs after
the first, when the header has `roi`; one field of view per plane, so far).

With several planes each plane has its own ROIs and its own chain (registration, traces, dF/F,
deconvolution); `add(plane, frame)` runs the plane's chain and, on the frame of the last plane listed,
returns the volume's activity vector: the planes' activities one after the other, in the order of
`planes` (increasing, as acquired), each in its own ROI order. A volume in which a plane's frame
never arrived still goes out (that plane keeps its previous activity) and is counted in `incomplete`.
"""

from __future__ import annotations

import numpy as np

from rtdecode.errors import ConfigError, StageError
from rtdecode.stage import Chain

REASONS = ("other_channel", "other_plane", "other_roi")


class Planes:
    """Frame selection (`channel`, `planes`) and, when `chains` is given, one chain per plane."""

    def __init__(self, channel: int, planes: list[int], chains: list[Chain] | None = None):
        planes = [int(p) for p in planes]
        if not planes or any(b <= a for a, b in zip(planes, planes[1:])):
            raise ConfigError(f"planes must be listed once each, increasing; got {planes}")
        if chains is not None and len(chains) != len(planes):
            raise ConfigError(f"{len(planes)} planes {planes} but {len(chains)} extraction chains")
        self.channel, self.planes, self.chains = int(channel), planes, chains
        self.index = {p: i for i, p in enumerate(planes)}
        self.incomplete = 0  # volumes sent with a plane missing
        if chains is not None:
            sizes = []
            for p, c in zip(planes, chains):
                spec = c.out_spec
                if len(spec.shape) != 1:
                    raise StageError(f"plane {p}: the extraction chain gives {spec}, expected one activity vector")
                sizes.append(int(spec.shape[0]))
            self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
            self.activity = np.zeros(int(self.offsets[-1]), np.float32)
            self._seen = [False] * len(planes)

    @property
    def n(self) -> int:
        """Neurons of the volume's activity vector (with chains)."""
        return int(self.offsets[-1])

    def ignore(self, header: dict) -> str | None:
        """Why a frame with this header is not extracted (one of REASONS), or None to extract it."""
        if header.get("channel") != self.channel:
            return "other_channel"
        if header.get("plane") not in self.index:
            return "other_plane"
        if header.get("roi", 1) != 1:
            return "other_roi"
        return None

    def add(self, plane: int, frame: np.ndarray) -> np.ndarray | None:
        """Extract `frame` of `plane`; the volume's activity vector on the last plane, else None."""
        i = self.index[plane]
        out = self.chains[i].process(frame)
        self.activity[self.offsets[i]:self.offsets[i + 1]] = out
        self._seen[i] = True
        if i != len(self.planes) - 1:
            return None
        if not all(self._seen):
            self.incomplete += 1
        self._seen = [False] * len(self.planes)
        return self.activity

    def warm_up(self) -> None:
        for c in self.chains or ():
            c.warm_up()

    def time_stages(self) -> None:
        for c in self.chains or ():
            c.time_stages()

    def stage_summary_ms(self) -> dict:
        """{'plane{p}.{stage}': {p50, p99, max, n}} of every plane's chain."""
        out = {}
        for p, c in zip(self.planes, self.chains or ()):
            out |= {f"plane{p}.{k}": v for k, v in c.stage_summary_ms().items()}
        return out
