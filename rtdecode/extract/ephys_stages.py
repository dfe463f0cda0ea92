"""The ephys extraction as stages: band-pass -> common reference -> threshold crossings -> bin counts.

The one implementation of the ephys extraction, live and offline (`rtdecode bench extract`), on the
Numba kernels (`kernels.py`), under the stage contract (rtdecode.stage) so that the live graph is
checked before the first block and each step is timed; `reference_detect` (rtdecode.extract.ephys,
NumPy/SciPy over the whole signal) is its test oracle:

    BandPass          float32 (B, C) µV     -> float32 (B, C)     Butterworth, second-order sections
    CommonReference   float32 (B, C)        -> float32 (B, C)     minus the mean (or median) over channels
    Detect            float32 (B, C)        -> int64 (2, E + 1)   events: negative threshold crossings
    BinCounts         int64 (2, E + 1)      -> float32 (N,)       events per input in the open bin

Blocks: B = `block_samples` is the block capacity (samples x channels, as Open Ephys streams them
after reassembly). The source cuts the stream at bin edges (rtdecode.sources.openephys.continuous),
so a block may hold n < B samples; `SampleChain` runs such a block on the first n rows of the same
preallocated buffers (the sample-wise stages set `per_sample = True`). Nothing is carried over from
one block to the next but each stage's state (filter state, last sample, refractory memory), so
the result does not depend on where the stream was cut (tests/extract/test_ephys_stages.py).

Event blocks (Detect's output, BinCounts' input): int64 (2, E + 1); column 0 holds (n, the sample
number of the block's first sample), columns 1..n the events' (sample number, input index). E is
the event capacity; a block with more events loses the rest (counted in `Detect.lost`).

The sample rate is known only once the stream's first block arrives: the specs do not depend on
it, so the graph is checked and the kernels compiled before; `SampleChain.start(fs, t0)` then sets
the filter, the refractory period and the noise window.

The stages are registered (rtdecode.extract.stages, modality "ephys": bandpass, common_reference,
detect, bin, bin_units), each with `Options` and `from_options(ctx, in_spec, options)` on an
`EphysContext`; the rig file lists them under `extraction.ephys.stages`, and `build_ephys_stages`
builds every ephys chain (live, `rtdecode bench extract`, the tests) from such a spec.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from rtdecode.errors import ConfigError, StageError
from rtdecode.extract import kernels as _k
from rtdecode.extract import stages as _registry
from rtdecode.extract.ephys import ThresholdCrossings, bandpass_sos
from rtdecode.stage import Chain, Spec, Stage, StageOptions

log = logging.getLogger(__name__)

_NO_FILTER = np.array([[1.0, 0, 0, 1, 0, 0]])


def event_capacity(block_samples: int, n_channels: int) -> int:
    """Default event capacity of a block: one event per 4 samples x channels."""
    return block_samples * n_channels // 4 + 16


@dataclass(frozen=True)
class EphysContext:
    """What an ephys chain's stages are built on: `n_inputs` channels (or units), blocks of at most
    `block_samples`, what the source gives the first stage (`takes`: "samples", or "events": event
    blocks of `capacity` events), the raw samples' dtype and `scale` (applied by bandpass, e.g.
    bit_volts for µV), a known (C,) `noise` (None: detect learns it) and the event capacity of a
    block (None: `event_capacity`)."""

    n_inputs: int
    block_samples: int = 1024
    takes: str = "samples"
    scale: float = 1.0
    in_dtype: Any = np.float32
    noise: np.ndarray | None = None
    capacity: int | None = None

    def samples(self, in_spec) -> tuple[int, int]:
        """(B, C) of a sample-wise stage: what the stage before gives, or the context's."""
        return tuple(in_spec.shape) if in_spec is not None else (self.block_samples, self.n_inputs)

    def events(self, in_spec) -> int:
        """The event capacity E of a stage taking event blocks (2, E + 1)."""
        if in_spec is not None:
            return in_spec.shape[1] - 1
        return self.capacity or event_capacity(self.block_samples, self.n_inputs)


class BandPass(Stage):
    """(n <= B, C) samples -> band-passed float32 (Butterworth `order`, `band` Hz; None: no filter).

    scale multiplies the raw samples first (e.g. bit_volts for int16 input). State: the filter's
    (sections, 2, C) delay line, carried across blocks."""

    name = "bandpass"
    per_sample = True

    class Options(StageOptions):
        band: tuple[Annotated[float, Field(gt=0.0)], Annotated[float, Field(gt=0.0)]] | None = Field(
            (300.0, 6000.0), description="pass band, Hz (low, high; high < the sample rate / 2); null: no filter")
        order: int = Field(3, ge=1, le=8, description="the Butterworth filter's order")

        @field_validator("band")
        @classmethod
        def _band(cls, v):
            if v is not None and not v[0] < v[1]:
                raise ValueError(f"low edge {v[0]} must be below the high edge {v[1]}")
            return v

    @classmethod
    def from_options(cls, ctx: EphysContext, in_spec, opts: "BandPass.Options") -> "BandPass":
        """Band-pass of the context's raw blocks (or what the stage before gives), scaled by ctx.scale."""
        B, C = ctx.samples(in_spec)
        return cls(C, B, opts.band, opts.order, ctx.scale, ctx.in_dtype if in_spec is None else in_spec.dtype)

    def __init__(self, n_channels: int, block_samples: int, band=(300.0, 6000.0), order: int = 3,
                 scale: float = 1.0, in_dtype=np.float32):
        self.band = None if band is None else (float(band[0]), float(band[1]))
        self.order, self.scale = int(order), float(scale)
        self.in_spec = Spec(in_dtype, (block_samples, n_channels))
        self.out_spec = Spec(np.float32, (block_samples, n_channels))
        self.fs: float | None = None
        self.sos = _NO_FILTER if band is None else None
        if band is not None:  # refuse a bad band now, not at the first block: check it at the highest rate
            bandpass_sos(1e6, self.band, self.order)
        self.reset()

    def start(self, fs: float, t0: int = 0) -> None:
        """The stream's sample rate is known: design the filter (ConfigError if the band does not fit)."""
        self.fs = float(fs)
        self.sos = _NO_FILTER if self.band is None else bandpass_sos(fs, self.band, self.order)
        self.reset()

    def restart(self, t0: int) -> None:
        self.reset()

    def reset(self) -> None:
        sections = 1 if self.sos is None else self.sos.shape[0]
        self.zi = np.zeros((sections, 2, self.in_spec.shape[1]))

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        if self.sos is None:
            raise StageError("bandpass: the sample rate is not known yet (start(fs) comes with the first block)")
        _k.sos_filter_chunk(inp, self.scale, self.sos, self.zi, out)

    def warm_up(self) -> None:
        _k.warm_up_kernels()


class CommonReference(Stage):
    """(n <= B, C) float32 -> the same minus, at each sample, the mean ('mean') or median over channels."""

    name = "common_reference"
    per_sample = True

    class Options(StageOptions):
        method: Literal["mean", "median"] = Field("mean", description="subtract the mean or the median over channels")

    @classmethod
    def from_options(cls, ctx: EphysContext, in_spec, opts: "CommonReference.Options") -> "CommonReference":
        B, C = ctx.samples(in_spec)
        return cls(C, B, opts.method)

    def __init__(self, n_channels: int, block_samples: int, method: str = "mean"):
        if method not in ("mean", "median"):
            raise ConfigError(f"extraction.ephys.reference must be 'mean', 'median' or null, got {method!r}")
        self.method = method
        self.in_spec = self.out_spec = Spec(np.float32, (block_samples, n_channels))
        self._scratch = np.empty(n_channels, np.float32)

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        np.copyto(out, inp)
        if self.method == "mean":
            _k.common_average(out)
        else:
            _k.common_median(out, self._scratch)

    def warm_up(self) -> None:
        _k.warm_up_kernels()


class Detect(Stage):
    """(n <= B, C) float32 -> event block int64 (2, E + 1) of negative threshold crossings.

    `ThresholdCrossings` (ephys.py) after `start(fs, t0)`: y[t] < -thr <= y[t-1], at least
    `refractory_ms` after the channel's last event; thr = k x the channel's robust noise over
    exactly the first `noise_s` seconds (no events before), or `noise` x k, or |threshold_uv|.
    State: the sample clock (absolute sample numbers), each channel's last sample and last event."""

    name = "detect"

    class Options(StageOptions):
        k: float = Field(4.5, gt=0.0, le=50.0, description="threshold, x each channel's robust noise (negative crossings)")
        threshold_uv: float | None = Field(None, gt=0.0, le=10000.0,
                                           description="an absolute threshold, uV (scaled input units), instead of k")
        noise_s: float = Field(1.0, gt=0.0, le=600.0,
                               description="the noise is learnt over the first noise_s seconds (no events before)")
        refractory_ms: float = Field(1.0, ge=0.0, le=1000.0, description="the shortest time between a channel's events, ms")

    @classmethod
    def from_options(cls, ctx: EphysContext, in_spec, opts: "Detect.Options") -> "Detect":
        """Crossings of the (B, C) blocks; the event block holds ctx.capacity events (default `event_capacity`)."""
        B, C = ctx.samples(in_spec)
        return cls(C, B, k=opts.k, threshold_uv=opts.threshold_uv, noise=ctx.noise, noise_s=opts.noise_s,
                   refractory_ms=opts.refractory_ms, capacity=ctx.capacity)

    def __init__(self, n_channels: int, block_samples: int, *, k: float = 4.5, threshold_uv: float | None = None,
                 noise: np.ndarray | None = None, noise_s: float = 1.0, refractory_ms: float = 1.0,
                 capacity: int | None = None):
        self._kw = dict(k=k, threshold_uv=threshold_uv, noise=noise, noise_s=noise_s, refractory_ms=refractory_ms)
        ThresholdCrossings(n_channels, 1e6, **self._kw)  # refuse bad settings now, not at the first block
        self.C = int(n_channels)
        cap = capacity or event_capacity(block_samples, n_channels)
        self.in_spec = Spec(np.float32, (block_samples, n_channels))
        self.out_spec = Spec(np.int64, (2, cap + 1))
        self.crossings: ThresholdCrossings | None = None
        self.events = 0  # events handed on since the start
        self.lost = 0  # blocks whose events did not fit in the event block

    def start(self, fs: float, t0: int = 0) -> None:
        self.crossings = ThresholdCrossings(self.C, fs, t0=t0, **self._kw)

    @property
    def calibrated(self) -> bool:
        return self.crossings is not None and self.crossings.calibrated

    def reset(self) -> None:
        if self.crossings is not None:
            self.crossings.reset()

    def skip(self, n_samples: int) -> None:
        """Samples were lost (a gap): move the sample clock on; the last sample and the refractory
        memory are kept (as the filter state is), so the only artefact is the step across the gap."""
        self.crossings.skip(n_samples)

    def restart(self, t0: int) -> None:
        """The acquisition restarted at sample `t0`: clear the refractory memory; keep thresholds learnt."""
        self.crossings.restart(t0)

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        det = self.crossings
        if det is None:
            raise StageError("detect: the sample rate is not known yet (start(fs) comes with the first block)")
        t = det.t
        n = det.detect(inp, out[0, 1:], out[1, 1:])
        if n == out.shape[1] - 1:
            self.lost += 1
            log.warning("ephys: event block full (%d events) in one block; lower block_samples", n)
        out[0, 0], out[1, 0] = n, t
        self.events += n

    def warm_up(self) -> None:
        _k.warm_up_kernels()


class BinCounts(Stage):
    """Event block int64 (2, E + 1) -> float32 (N,) events per input in the open bin so far.

    Counts add up over the blocks of one bin; the live loop hands out the output when the source
    says the bin is complete and calls `clear()` when a new bin starts. Inputs are channels
    (threshold crossings) or sorted units (Event Broadcaster spikes)."""

    name = "bin"

    class Options(StageOptions):
        pass

    @classmethod
    def from_options(cls, ctx: EphysContext, in_spec, opts) -> "BinCounts":
        """Counts of ctx.n_inputs inputs from the event blocks before it (or the source's)."""
        return cls(ctx.n_inputs, ctx.events(in_spec))

    def __init__(self, n_inputs: int, capacity: int, name: str = "bin"):
        self.name = name
        self.in_spec = Spec(np.int64, (2, capacity + 1))
        self.out_spec = Spec(np.float32, (n_inputs,))
        self.counts = np.zeros((1, n_inputs), np.int64)
        self._all = np.array([-(2**62), 2**62], np.int64)  # one bin: every event of the block

    def clear(self) -> None:
        self.counts[:] = 0

    def reset(self) -> None:
        self.clear()

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        n = int(inp[0, 0])
        if n:
            _k.bin_events(inp[0, 1:], inp[1, 1:], n, self._all, self.counts)
        out[:] = self.counts[0]

    def warm_up(self) -> None:
        _k.warm_up_kernels()
        self.process(self.in_spec.empty(), self.out_spec.empty())
        self.reset()


class BinUnits(BinCounts):
    """BinCounts named `bin_units`: the sorted spikes (eventbroadcaster) per electrode or unit."""

    name = "bin_units"

    def __init__(self, n_inputs: int, capacity: int, name: str = "bin_units"):
        super().__init__(n_inputs, capacity, name)


def events(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sample numbers, input indices) of an event block (Detect's output): views into it."""
    n = int(block[0, 0])
    return block[0, 1:n + 1], block[1, 1:n + 1]


def pack_events(samples: np.ndarray, inputs: np.ndarray, out: np.ndarray) -> int:
    """Write up to E events (sample numbers, input indices) into the event block `out` (2, E + 1);
    returns how many were written (the caller sends the rest in the next block)."""
    n = min(samples.shape[0], out.shape[1] - 1)
    out[0, 0], out[1, 0] = n, samples[0] if n else 0
    out[0, 1:n + 1] = samples[:n]
    out[1, 1:n + 1] = inputs[:n]
    return n


class SampleChain(Chain):
    """A Chain over sample blocks (n <= B, C): the graph is checked on the specs (B = capacity) as
    any Chain; a shorter block runs on the first n rows of the sample-wise stages' buffers.

    `start(fs, t0)`, `skip(n)`, `restart(t0)` go to the stages that keep a sample clock or filter."""

    def process(self, inp: np.ndarray) -> np.ndarray:
        spec = self.in_spec
        n = inp.shape[0] if inp.ndim == len(spec.shape) else -1
        if inp.dtype != spec.dtype or inp.shape[1:] != spec.shape[1:] or not 0 <= n <= spec.shape[0]:
            raise StageError(f"input of '{self.stages[0].name}': expected {spec.dtype.str} (<= {spec.shape[0]}, "
                             f"{', '.join(map(str, spec.shape[1:]))}), got {inp.dtype.str} {inp.shape}")
        x = inp
        timing = self.timing
        clock = time.perf_counter
        t = clock() if timing else 0.0
        for stage, buf, hist in zip(self.stages, self.buffers, self.stage_latency):
            out = buf[:n] if getattr(stage, "per_sample", False) else buf
            stage.process(x, out)
            x = out
            if timing:
                now = clock()
                hist.add(now - t)
                t = now
        return x

    def _each(self, method: str, *args) -> None:
        for s in self.stages:
            f = getattr(s, method, None)
            if f is not None:
                f(*args)

    def start(self, fs: float, t0: int = 0) -> None:
        self._each("start", fs, t0)

    def skip(self, n_samples: int) -> None:
        self._each("skip", n_samples)

    def restart(self, t0: int) -> None:
        self._each("restart", t0)


def ephys_spec(band=(300.0, 6000.0), order: int = 3, reference: str | None = "mean", k: float = 4.5,
               threshold_uv: float | None = None, noise_s: float = 1.0, refractory_ms: float = 1.0,
               binned: bool = True) -> list[dict]:
    """The default ephys chain spec (DEFAULT_EPHYS_STAGES) with these options: [bandpass,
    common_reference (unless reference is None), detect, bin (unless not `binned`: the chain then
    gives detect's event blocks, read with `events`)].

    band: pass band, Hz, or None (data already filtered); reference: "mean", "median" or None;
    k: threshold x each channel's robust noise, or `threshold_uv` (absolute, negative crossings);
    refractory_ms: minimum time between two events of one channel; noise_s: the noise window, s."""
    if reference not in ("mean", "median", None):
        raise ConfigError(f"extraction.ephys.reference must be 'mean', 'median' or null, got {reference!r}")
    spec = [{"bandpass": {"band": band, "order": order}}]
    if reference is not None:
        spec.append({"common_reference": {"method": reference}})
    spec.append({"detect": {"k": k, "threshold_uv": threshold_uv, "noise_s": noise_s, "refractory_ms": refractory_ms}})
    if binned:
        spec.append("bin")
    return spec


def build_ephys_stages(n_channels: int, block_samples: int = 1024, *, spec=None, takes: str = "samples",
                       scale: float = 1.0, in_dtype=np.float32, noise: np.ndarray | None = None,
                       capacity: int | None = None, **options) -> list[Stage]:
    """The ephys stages of `spec` (rtdecode.extract.stages, modality "ephys"; None: `ephys_spec(**options)`,
    the default chain) for C = `n_channels` inputs in blocks of at most `block_samples`: the one
    builder of every ephys chain. Wrap sample stages in `SampleChain`, then `start(fs, t0)` it.

    takes: what the source gives the first stage, "samples" or "events" (sorted spikes);
    scale multiplies the raw samples (e.g. bit_volts, for µV); noise: (C,) noise std in the scaled
    input's units (None: learnt over detect's first `noise_s` s); capacity: events per block
    (default `event_capacity`). ConfigError for an unknown stage or option, or a first stage that
    does not take what the source gives."""
    if block_samples < 1 or n_channels < 1:
        raise ConfigError(f"ephys: need n_channels >= 1 and block_samples >= 1, got {n_channels}, {block_samples}")
    if spec is None:
        spec = ephys_spec(**options)
    elif options:
        raise ConfigError(f"build_ephys_stages: give a spec or options ({', '.join(options)}), not both")
    first = _registry.get(_registry.parse_spec(spec, "ephys")[0][0], "ephys")
    if first.takes != takes:
        raise ConfigError(f"extraction.ephys.stages: the source gives {takes} but the first stage, "
                          f"{first.name}, takes {first.takes}")
    ctx = EphysContext(int(n_channels), int(block_samples), takes, float(scale), np.dtype(in_dtype), noise, capacity)
    return _registry.build_stages(spec, ctx, "ephys")
