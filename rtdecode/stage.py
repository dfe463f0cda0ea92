"""The stage contract: what every step of the live path promises the pipeline.

A stage takes one array and writes one preallocated array per frame. It declares how much history
it needs (in frames), the dtype and shape it takes and gives, so that the pipeline can check the
whole graph before the first frame arrives instead of failing mid-session.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from rtdecode.errors import StageError
from rtdecode.latency import Histogram


@dataclass(frozen=True)
class Spec:
    """The dtype and shape of the array a stage takes or gives."""

    dtype: np.dtype
    shape: tuple[int, ...]

    def __post_init__(self):
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    def empty(self) -> np.ndarray:
        return np.zeros(self.shape, self.dtype)

    def check(self, arr: np.ndarray, what: str) -> None:
        """Raise StageError if `arr` does not match this spec."""
        if arr.dtype != self.dtype or arr.shape != self.shape:
            raise StageError(
                f"{what}: expected {self.dtype.str} {self.shape}, got {arr.dtype.str} {arr.shape}"
            )

    def __str__(self) -> str:
        return f"{self.dtype.str}{list(self.shape)}"


class StageOptions(BaseModel):
    """A stage's options, as a chain spec or the rig file gives them: known keys only, typed, with
    a description each (docs/rig-file.md lists them). Subclass it as `Stage.Options`."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage:
    """One step of the live path.

    Subclasses set `name`, `history` (frames of past input they keep, 0 if none), `in_spec` and
    `out_spec`, and implement `process(inp, out)` that writes into `out` without allocating.
    `reset()` clears the history (e.g. between sessions). A stage built from a chain spec
    (rtdecode.extract.stages) also has `Options` (a StageOptions) and `from_options(ctx, in_spec,
    options)`; `taps(out)` says what it exposes for recording.
    """

    name: str = "stage"
    history: int = 0
    in_spec: Spec
    out_spec: Spec

    def process(self, inp: np.ndarray, out: np.ndarray) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        """Forget all history; the default stage has none."""

    def warm_up(self) -> None:
        """Run once on dummy input so that compilation happens before acquisition."""
        out = self.out_spec.empty()
        self.process(self.in_spec.empty(), out)
        self.reset()

    def taps(self, out: np.ndarray) -> dict:
        """What this stage exposes for recording with each frame: {name: (getter, shape, dtype)};
        `out` is the stage's output buffer in its chain. The default stage exposes nothing."""
        return {}


def check_graph(stages: list[Stage]) -> None:
    """Check that each stage gives what the next one takes; raise StageError naming the first break."""
    if not stages:
        raise StageError("the pipeline has no stages")
    for a, b in zip(stages, stages[1:]):
        if a.out_spec != b.in_spec:
            raise StageError(
                f"stage '{a.name}' gives {a.out_spec} but the next stage '{b.name}' takes {b.in_spec}"
            )


class Chain:
    """Stages run in order, each writing into its own preallocated buffer.

    With `timing` on (`time_stages()`), each stage's time per frame goes into its own Histogram
    (`stage_latency`, one per stage, in order; `stage_summary_ms()` names them).
    """

    def __init__(self, stages: list[Stage]):
        check_graph(stages)
        self.stages = stages
        self.buffers = [s.out_spec.empty() for s in stages]
        self.timing = False
        self.stage_latency = [Histogram() for _ in stages]

    def time_stages(self, on: bool = True) -> None:
        """Start (or stop) timing each stage; the histograms are kept."""
        self.timing = on

    def stage_names(self) -> list[str]:
        """Stage names, made unique with '#2', '#3' where a name repeats."""
        seen: dict[str, int] = {}
        names = []
        for s in self.stages:
            seen[s.name] = seen.get(s.name, 0) + 1
            names.append(s.name if seen[s.name] == 1 else f"{s.name}#{seen[s.name]}")
        return names

    def stage_summary_ms(self) -> dict:
        """{stage name: {p50, p99, max, n} in ms} of the timed frames."""
        return {name: h.summary_ms() for name, h in zip(self.stage_names(), self.stage_latency)}

    @property
    def in_spec(self) -> Spec:
        return self.stages[0].in_spec

    @property
    def out_spec(self) -> Spec:
        return self.stages[-1].out_spec

    def process(self, inp: np.ndarray) -> np.ndarray:
        """Run one frame through every stage; returns the last buffer (overwritten next call)."""
        self.in_spec.check(inp, f"input of '{self.stages[0].name}'")
        x = inp
        if self.timing:
            clock = time.perf_counter
            t = clock()
            for stage, buf, hist in zip(self.stages, self.buffers, self.stage_latency):
                stage.process(x, buf)
                x = buf
                now = clock()
                hist.add(now - t)
                t = now
            return x
        for stage, buf in zip(self.stages, self.buffers):
            stage.process(x, buf)
            x = buf
        return x

    def warm_up(self) -> None:
        for s in self.stages:
            s.warm_up()

    def taps(self) -> dict:
        """Every stage's taps, {name: (getter, shape, dtype)}; a later stage's name wins."""
        taps = {}
        for stage, buf in zip(self.stages, self.buffers):
            taps.update(stage.taps(buf))
        return taps

    def find(self, attribute: str):
        """The first stage that has `attribute` (e.g. 'rois', 'reference'), or None."""
        return next((s for s in self.stages if hasattr(s, attribute)), None)

    def reset(self) -> None:
        for s in self.stages:
            s.reset()
