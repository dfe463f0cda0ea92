"""dF/F against a running lower-envelope baseline."""

from __future__ import annotations

import logging
import math

import numpy as np
from pydantic import Field

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k
from rtdecode.stage import Spec, Stage, StageOptions

log = logging.getLogger(__name__)


class DeltaF(Stage):
    """float32 (n,) fluorescence -> float32 (n,) dF/F = (F - b) / b.

    The baseline b is an asymmetric exponential running average: it follows decreases of F with
    time constant `tau_down_s` and increases with the much slower `tau_up_s`, so it tracks the
    lower envelope (resting level and slow drift) and not the calcium transients. dF/F of frame t
    uses the baseline of frames up to t-1 and then updates it.

    n: number of ROIs. fps: frame rate, Hz. Time constants in s.
    baseline: (n,) initial baseline, e.g. a low percentile of a calibration block; None starts
        from the first frame (whose dF/F is then 0). Must be > 0 everywhere (StageError).
    min_baseline: floor the running baseline is clamped to (counts), so a neuropil-subtracted
        trace near or below 0 cannot divide by ~0; a warning is logged the first time.

    Non-finite input (NaN / inf) of a ROI is rejected: its dF/F is 0 for that frame, its baseline
    is left as it was, and `rejected` counts such values (a warning is logged the first time).
    backend: "numba" (default) or "numpy" (the reference).

    history = 0: no past frames are kept; the state is the baseline vector, which settles in
    about `settle_frames` = tau_up_s * fps frames when started from an elevated first frame.
    """

    name = "dff"
    history = 0

    class Options(StageOptions):
        tau_down_s: float = Field(2.0, gt=0.0, le=600.0, description="the baseline's fall time constant, s")
        tau_up_s: float = Field(60.0, gt=0.0, le=3600.0, description="the baseline's rise time constant, s")
        min_baseline: float = Field(1.0, gt=0.0, description="the smallest baseline divided by, counts")

    @classmethod
    def from_options(cls, ctx, in_spec, opts: "DeltaF.Options") -> "DeltaF":
        """dF/F of each of the in_spec's (n,) traces."""
        return cls(in_spec.shape[0], fps=ctx.fps, tau_down_s=opts.tau_down_s, tau_up_s=opts.tau_up_s,
                   min_baseline=opts.min_baseline, backend="numba" if ctx.fast else "numpy")

    def taps(self, out):
        """'dff': this stage's output, dF/F of each ROI."""
        return {"dff": (lambda: out, out.shape, "float32")}

    def __init__(self, n: int, fps: float = 30.0, tau_down_s: float = 2.0, tau_up_s: float = 60.0,
                 baseline: np.ndarray | None = None, min_baseline: float = 1.0, backend: str = "numba"):
        if backend not in ("numba", "numpy"):
            raise ConfigError(f"dff: backend must be 'numba' or 'numpy', got {backend!r}")
        self.backend = backend
        if n < 1:
            raise ConfigError(f"dff: n must be >= 1, got {n}")
        if not (fps > 0 and tau_down_s > 0 and tau_up_s > 0):
            raise ConfigError(f"dff: fps and time constants must be > 0, got fps={fps}, "
                              f"tau_down_s={tau_down_s}, tau_up_s={tau_up_s}")
        if not min_baseline > 0:
            raise ConfigError(f"dff: min_baseline must be > 0, got {min_baseline}")
        self.in_spec = Spec(np.float32, (n,))
        self.out_spec = Spec(np.float32, (n,))
        self.a_down = np.float32(1 - math.exp(-1 / (fps * tau_down_s)))
        self.a_up = np.float32(1 - math.exp(-1 / (fps * tau_up_s)))
        self.settle_frames = int(round(tau_up_s * fps))
        self.min_baseline = np.float32(min_baseline)
        if baseline is not None:
            b = np.asarray(baseline, dtype=np.float32)
            if b.shape != (n,):
                raise StageError(f"dff: baseline must have shape ({n},), got {b.shape}")
            bad = np.flatnonzero(~(b > 0))  # also catches NaN
            if bad.size:
                raise StageError(
                    f"dff: baseline must be > 0 and finite; {bad.size} ROI(s) are not, first ROI {bad[0]} = "
                    f"{b[bad[0]]}. Check the neuropil coefficient or drop those ROIs"
                )
            self._initial = b.copy()
        else:
            self._initial = None
        self.baseline = np.zeros(n, np.float32)
        self._step = np.empty(n, np.float32)
        self._falling = np.empty(n, bool)
        self._started = False
        self._warned = False
        self.rejected = 0

    def _start(self, inp: np.ndarray) -> None:
        b = self.baseline
        if self._initial is None:
            np.copyto(b, inp)
            bad = ~np.isfinite(b)
            if bad.any():  # no baseline yet for these ROIs: start them at the floor
                b[bad] = self.min_baseline
        else:
            np.copyto(b, self._initial)
        self._clamp()
        self._started = True

    def _reject_log(self, k: int) -> None:
        if k and self.rejected == 0:
            log.warning("dff: %d ROI(s) gave NaN/inf fluorescence; rejected (dF/F 0, baseline kept), "
                        "counted in DeltaF.rejected", k)
        self.rejected += k

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        if not self._started:
            self._start(inp)
        if self.backend == "numba":
            rej, low = _k.dff_step(inp, self.baseline, out, self.a_down, self.a_up, self.min_baseline)
            if rej:
                self._reject_log(rej)
            if low and not self._warned:
                log.warning("dff: baseline of %d ROI(s) fell below %g and is clamped there; their dF/F "
                            "is unreliable (F near 0 after neuropil subtraction?)", low, self.min_baseline)
                self._warned = True
            return
        self._process_numpy(inp, out)

    def _process_numpy(self, inp: np.ndarray, out: np.ndarray) -> None:
        """The NumPy reference (allocates only when non-finite values arrive)."""
        b = self.baseline
        bad = None
        if not np.isfinite(inp).all():
            bad = ~np.isfinite(inp)
            self._reject_log(int(bad.sum()))
            inp = np.where(bad, b, inp)
        np.subtract(inp, b, out=out)
        step = self._step
        np.less(out, 0, out=self._falling)
        step.fill(self.a_up)
        np.copyto(step, self.a_down, where=self._falling)
        step *= out
        out /= b
        b += step
        self._clamp()
        if bad is not None:
            out[bad] = 0

    def _clamp(self) -> None:
        b = self.baseline
        if not self._warned and np.any(b < self.min_baseline):
            log.warning("dff: baseline of %d ROI(s) fell below %g and is clamped there; their dF/F is "
                        "unreliable (F near 0 after neuropil subtraction?)",
                        int(np.count_nonzero(b < self.min_baseline)), self.min_baseline)
            self._warned = True
        np.maximum(b, self.min_baseline, out=b)

    def warm_up(self) -> None:
        # The default dummy input (zeros) would trip the low-baseline warning; ones are valid F.
        self.process(np.ones(self.in_spec.shape, np.float32), self.out_spec.empty())
        self.reset()

    def reset(self) -> None:
        self.baseline[:] = 0
        self._started = False
        self._warned = False
        self.rejected = 0
