"""ROI footprints and their neuropil masks, as sparse weight matrices over the flattened frame.

`Rois.footprints @ frame.ravel()` gives each ROI's lam-weighted mean fluorescence, and
`Rois.neuropil @ frame.ravel()` the mean of its surrounding annulus; both in frame counts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, sparse

from rtdecode.errors import RoiError
from rtdecode.extract import safe_npy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rois:
    """ROIs of one field of view.

    footprints: CSR (n, H*W) float32, row i = lam of ROI i normalised to sum 1.
    neuropil: CSR (n, H*W) float32, row i = uniform weights over ROI i's annulus, summing to 1.
    frame_shape: (H, W) pixels.
    index: (n,) int, each ROI's index in the source (e.g. suite2p's stat.npy), for messages.
    """

    footprints: sparse.csr_array
    neuropil: sparse.csr_array
    frame_shape: tuple[int, int]
    index: np.ndarray

    @property
    def n(self) -> int:
        return self.footprints.shape[0]


def from_footprints(
    ypix_list,
    xpix_list,
    lam_list,
    frame_shape: tuple[int, int],
    *,
    inner_px: int = 2,
    outer_px: float = 15.0,
    min_neuropil_px: int = 150,
    max_neuropil_px: int | None = None,
    index=None,
) -> Rois:
    """Build `Rois` from per-ROI pixel lists (suite2p's ypix, xpix, lam).

    The neuropil of ROI i is every pixel within `outer_px` of its centre (lam-weighted mean pixel)
    that is farther than `inner_px` from every ROI's pixels; the radius grows in 5 px steps until
    the annulus holds `min_neuropil_px` pixels (or reaches the frame size).
    max_neuropil_px: None keeps every annulus pixel; a number keeps at most that many, evenly
    spaced through the annulus in raster order (deterministic; see `cap_neuropil`). The neuropil is
    spatially smooth, so a sample of it estimates the annulus mean; fewer pixels make the per-frame
    ROI+neuropil product cheaper, at some cost in accuracy (`build_chain` takes the same option).
    index: ROI numbers used in error messages (default 0..n-1).
    Raises RoiError naming the ROI if a footprint is empty, out of the frame, or has bad weights.
    """
    H, W = (int(s) for s in frame_shape)
    if H < 1 or W < 1:
        raise RoiError(f"frame_shape must be positive, got {frame_shape}")
    n = len(ypix_list)
    if len(xpix_list) != n or len(lam_list) != n:
        raise RoiError(
            f"got {n} ypix, {len(xpix_list)} xpix and {len(lam_list)} lam arrays; they must match"
        )
    if n == 0:
        raise RoiError("no ROIs given")
    index = np.arange(n) if index is None else np.asarray(index)

    flat, weights = [], []
    for i in range(n):
        p, w = _check_roi(ypix_list[i], xpix_list[i], lam_list[i], H, W, int(index[i]))
        flat.append(p)
        weights.append(w / w.sum())
    footprints = _rows_to_csr(flat, weights, H * W)

    # Neuropil must not see any cell, including the blur just outside each footprint.
    cell_mask = np.zeros(H * W, bool)
    cell_mask[np.concatenate(flat)] = True
    excluded = cell_mask.reshape(H, W)
    if inner_px > 0:
        excluded = ndimage.binary_dilation(excluded, structure=_disk(inner_px))
    allowed = ~excluded

    np_flat, np_w = [], []
    for i in range(n):
        cy = float(np.dot(weights[i], flat[i] // W))
        cx = float(np.dot(weights[i], flat[i] % W))
        pix = _annulus(allowed, cy, cx, outer_px, min_neuropil_px)
        if pix.size == 0:
            raise RoiError(
                f"ROI {int(index[i])}: no neuropil pixels around it (the frame is covered by cells)"
            )
        np_flat.append(pix)
        np_w.append(np.full(pix.size, 1.0 / pix.size))
    neuropil = _rows_to_csr(np_flat, np_w, H * W)
    log.debug("built %d ROIs on a %dx%d frame", n, H, W)
    rois = Rois(footprints, neuropil, (H, W), index)
    return rois if max_neuropil_px is None else cap_neuropil(rois, max_neuropil_px)


def cap_neuropil(rois: Rois, max_px: int) -> Rois:
    """The same ROIs with each neuropil row cut to at most `max_px` pixels, uniformly weighted.

    A row with more pixels keeps `max_px` of them evenly spaced through its (raster-ordered) pixel
    list: every (size / max_px)-th pixel, so the sample spreads over the whole annulus, rows by
    rows. Deterministic; rows already within the cap are kept as they are.
    Raises RoiError if max_px < 1.
    """
    if int(max_px) != max_px or max_px < 1:
        raise RoiError(f"max_neuropil_px must be a whole number >= 1, got {max_px}")
    max_px = int(max_px)
    npl = rois.neuropil
    sizes = np.diff(npl.indptr)
    if sizes.max(initial=0) <= max_px:
        return rois
    cols, vals = [], []
    for i in range(rois.n):
        pix = npl.indices[npl.indptr[i] : npl.indptr[i + 1]].astype(np.int64)  # sorted (canonical CSR)
        if pix.size > max_px:
            pix = pix[(np.arange(max_px) * pix.size) // max_px]  # evenly spaced, distinct
        cols.append(pix)
        vals.append(np.full(pix.size, 1.0 / pix.size))
    H, W = rois.frame_shape
    log.debug("neuropil capped at %d px per ROI (%d -> %d weighted pixels)", max_px, npl.nnz,
              sum(c.size for c in cols))
    return Rois(rois.footprints, _rows_to_csr(cols, vals, H * W), rois.frame_shape, rois.index)


def load_suite2p(
    folder, frame_shape: tuple[int, int] | None = None, only_cells: bool = True, **kwargs
) -> Rois:
    """Load ROIs from a suite2p plane folder (stat.npy, iscell.npy, ops.npy).

    frame_shape: (H, W); None takes ops['Ly'], ops['Lx'].
    only_cells: keep the ROIs that iscell.npy marks as cells (column 0 > 0.5).
    kwargs: passed to `from_footprints` (inner_px, outer_px, min_neuropil_px, max_neuropil_px).
    Raises RoiError if files are missing or disagree, or if a kept ROI is invalid (named by its
    index in stat.npy).
    """
    folder = Path(folder)
    stat_path = folder / "stat.npy"
    if not stat_path.is_file():
        raise RoiError(f"{stat_path} not found; point to a suite2p plane folder (e.g. suite2p/plane0)")
    # suite2p stores stat.npy and ops.npy as pickled objects: they are read by an unpickler that
    # admits only the numpy and builtin types suite2p writes (rtdecode.extract.safe_npy).
    stat = safe_npy.load(stat_path, error=RoiError)

    ops_path = folder / "ops.npy"
    if ops_path.is_file():
        ops = safe_npy.load(ops_path, error=RoiError)
        ops = ops.item() if ops.dtype.hasobject and ops.size == 1 else None
        if not isinstance(ops, dict):
            raise RoiError(f"{ops_path} does not hold suite2p's ops dictionary")
        ops_shape = (int(ops["Ly"]), int(ops["Lx"])) if "Ly" in ops and "Lx" in ops else None
    else:
        ops_shape = None
    if frame_shape is None:
        if ops_shape is None:
            raise RoiError(f"no frame size: {ops_path} is missing or lacks Ly/Lx; pass frame_shape")
        frame_shape = ops_shape
    elif ops_shape is not None and tuple(frame_shape) != ops_shape:
        raise RoiError(
            f"frame_shape {tuple(frame_shape)} disagrees with {ops_path} (Ly, Lx) = {ops_shape}"
        )

    keep = np.arange(len(stat))
    if only_cells:
        iscell_path = folder / "iscell.npy"
        if not iscell_path.is_file():
            raise RoiError(f"{iscell_path} not found; pass only_cells=False to use every ROI")
        iscell = np.load(iscell_path, allow_pickle=False)
        if iscell.ndim != 2 or iscell.shape[0] != len(stat):
            raise RoiError(f"{iscell_path} has shape {iscell.shape}, expected ({len(stat)}, 2)")
        keep = np.flatnonzero(iscell[:, 0] > 0.5)
        if keep.size == 0:
            raise RoiError(f"{iscell_path} marks no ROI as a cell; pass only_cells=False to use every ROI")

    ys, xs, lams = [], [], []
    for i in keep:
        s = stat[i]
        if not isinstance(s, dict) or not all(k in s for k in ("ypix", "xpix", "lam")):
            raise RoiError(f"ROI {i}: stat entry lacks 'ypix', 'xpix' or 'lam'")
        ys.append(s["ypix"])
        xs.append(s["xpix"])
        lams.append(s["lam"])
    log.info("loaded %d of %d ROIs from %s", len(keep), len(stat), folder)
    return from_footprints(ys, xs, lams, frame_shape, index=keep, **kwargs)


# --------------------------------------------------------------------------------------------
def _check_roi(ypix, xpix, lam, H: int, W: int, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate one ROI; returns flat pixel indices (int64) and weights (float64)."""
    y, x, w = np.asarray(ypix), np.asarray(xpix), np.asarray(lam, dtype=np.float64)
    if y.ndim != 1 or y.shape != x.shape or y.shape != w.shape:
        raise RoiError(
            f"ROI {i}: ypix, xpix and lam must be 1-D of equal length, got {y.shape}, {x.shape}, {w.shape}"
        )
    if y.size == 0:
        raise RoiError(f"ROI {i}: empty footprint (no pixels)")
    for name, a in (("ypix", y), ("xpix", x)):
        if not np.issubdtype(a.dtype, np.integer):
            if not (np.issubdtype(a.dtype, np.floating) and np.all(a == np.round(a))):
                raise RoiError(f"ROI {i}: {name} must hold whole pixel indices, got dtype {a.dtype}")
    if y.min() < 0 or y.max() >= H or x.min() < 0 or x.max() >= W:
        raise RoiError(
            f"ROI {i}: pixels outside the {H}x{W} frame (y in [{y.min()}, {y.max()}], "
            f"x in [{x.min()}, {x.max()}]); are the ROIs from another field of view?"
        )
    if not np.all(np.isfinite(w)):
        raise RoiError(f"ROI {i}: lam has non-finite values")
    if np.any(w < 0):
        raise RoiError(f"ROI {i}: lam has negative weights")
    if not w.sum() > 0:
        raise RoiError(f"ROI {i}: lam sums to 0")
    return y.astype(np.int64) * W + x.astype(np.int64), w


def _rows_to_csr(cols: list[np.ndarray], vals: list[np.ndarray], width: int) -> sparse.csr_array:
    rows = np.concatenate([np.full(len(c), i) for i, c in enumerate(cols)])
    m = sparse.csr_array(
        (np.concatenate(vals), (rows, np.concatenate(cols))), shape=(len(cols), width), dtype=np.float64
    )
    m.sum_duplicates()  # a pixel listed twice counts with its summed weight
    return m.astype(np.float32)


def _disk(r: int) -> np.ndarray:
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return y * y + x * x <= r * r


def _annulus(allowed: np.ndarray, cy: float, cx: float, radius: float, min_px: int) -> np.ndarray:
    """Flat indices of allowed pixels within `radius` of (cy, cx), growing it to reach `min_px`."""
    H, W = allowed.shape
    while True:
        r = int(np.ceil(radius))
        y0, y1 = max(0, int(cy) - r), min(H, int(cy) + r + 2)
        x0, x1 = max(0, int(cx) - r), min(W, int(cx) + r + 2)
        y, x = np.mgrid[y0:y1, x0:x1]
        sel = allowed[y0:y1, x0:x1] & ((y - cy) ** 2 + (x - cx) ** 2 <= radius * radius)
        if sel.sum() >= min_px or radius > max(H, W):
            return (y[sel] * W + x[sel]).astype(np.int64)
        radius += 5.0
