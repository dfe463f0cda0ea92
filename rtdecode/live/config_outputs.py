"""The rig file's `decoder`, `outputs`, `triggers` and `stimulus` sections (rtdecode.live.config):
the model decoded live, what the session publishes and records, the closed-loop outputs and their
rules, and when each stimulus frame started. Import them from rtdecode.live.config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator

from rtdecode.decode.backends import BACKENDS, DEFAULT_PREFERENCE
from rtdecode.errors import ConfigError
from rtdecode.live.config_checks import Endpoint, Name, NonEmpty, OneOf, Range, Section, problem
from rtdecode.sources.address import check_endpoint


TRIGGER_KINDS = ("zmq", "network_events", "serial")
RULE_KINDS = ("similarity", "luminance", "motion")
DEFAULT_PUBLISH = "tcp://127.0.0.1:5560"


class Decoder(Section):
    """The model decoded live; leave the section out to record a calibration block."""

    model: Path = Field(description="a model directory written by `rtdecode fit` (then `rtdecode compile`)")
    blas_threads: Annotated[int, Range(ge=1, le=256)] = Field(
        1, description="BLAS threads of the live process: 1 keeps the per-frame mat-vec from fighting acquisition "
                       "for cores")
    backends: Annotated[list[Annotated[str, OneOf(BACKENDS)]], NonEmpty] = Field(
        list(DEFAULT_PREFERENCE), description="preference order over the backend registry "
                                              "(rtdecode.decode.backends); the first that loads runs")

    @field_validator("backends")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise problem(f"{v} lists a backend twice")
        return v


class Outputs(Section):
    """Where the decoded stream goes."""

    publish: Endpoint = Field(DEFAULT_PUBLISH, description="the rtframe PUB address of 'decoded', 'uncertainty', "
                                                            "'refined', 'activity' and 'stats' (`rtdecode view` reads it); "
                                                            "tcp://*:5560 serves other PCs")
    record: Path | None = Field(None, description="a new session folder to record into (`rtdecode inspect` reads "
                                                  "it); `rtdecode run --record` overrides it")
    max_peers: Annotated[int, Range(ge=1, le=10000)] = Field(
        16, description="connections each socket rtdecode binds (publish, zmq triggers) takes; refused beyond, so "
                        "that idle peers cannot use up the file descriptors")
    raw_frames: RawFrames | None = Field(
        None, description="two-photon, one plane: also record the raw frames (e.g. a calibration block, for "
                          "`rtdecode rois`); needs a record path")
    uncertainty: bool = Field(
        True, description="publish (topic 'uncertainty', beside 'decoded') and record the per-pixel uncertainty "
                          "of each decoded frame when the model has a fold ensemble (image-prior amortized models: "
                          "the spread of its 5 fold ridges, computed after the decoded frame is out); models "
                          "without one publish none")
    refined: bool = Field(
        False, description="run the warm-start iterative inverse (the model's encoder, started from the decoded "
                           "frames) on the recent window in a background process of lowered priority, and publish "
                           "its frames (topic 'refined', beside 'decoded', with their own latency) and record them; "
                           "never delays 'decoded' (frames it cannot take are skipped and counted); needs a model "
                           "fitted with an encoder (rtdecode fit --method amortized, encoder steps > 0)")
    refined_iterations: Annotated[int, Range(ge=1, le=1000)] | None = Field(
        None, description="the inverse's iterations per refined frame; default: the model card's warm_iterations")
    refined_frames: Annotated[int, Range(ge=2, le=256)] = Field(
        16, description="frames of the recent window the refiner inverts (activity and decoded frames); it "
                        "publishes the refinement of the newest")


class RawFrames(Section):
    """Raw acquisition frames kept in the recording, in its chunks (zlib-compressed): a calibration block of a
    new field of view keeps them so that `rtdecode rois SESSION` finds its cells, with no second acquisition."""

    max_gib: Annotated[float, Range(gt=0.0, le=1024.0)] = Field(
        4.0, description="at most this many GiB of raw frames, counted uncompressed (less lands on disk); later "
                         "frames are not kept (a warning says so, `raw_saved` is false in their rows)")
    level: Annotated[int, Range(ge=1, le=9)] = Field(
        1, description="zlib compression level of the chunks: 1 fastest (the default; keeps up at 30 Hz on one "
                       "core), 9 smallest")


class TriggerRule(Section):
    """When a trigger fires: a score of each decoded frame crosses `threshold` on `consecutive`
    frames in a row (see rtdecode.outputs.triggers.rules)."""

    kind: Annotated[str, OneOf(RULE_KINDS)] = Field(
        description="the score: similarity (correlation with `target`), luminance (mean, 0-255) or motion "
                    "(mean |change| from the previous frame)")
    threshold: Annotated[float, Range(ge=-1.0, le=255.0)] = Field(description="the score's threshold")
    below: bool = Field(False, description="fire when the score is at or below the threshold instead of above")
    consecutive: Annotated[int, Range(ge=1, le=1000)] = Field(
        1, description="decoded frames in a row that must cross the threshold")
    region: tuple[int, int, int, int] | None = Field(
        None, description="y0, y1, x0, x1 in decoded-frame pixels (end exclusive); default: the whole frame")
    target: Path | None = Field(None, description=".npy image of the decoded frame's shape (similarity only)")

    @model_validator(mode="after")
    def _target(self):
        if (self.kind == "similarity") != (self.target is not None):
            raise problem("target: a .npy image is needed by 'similarity' rules and used by no other kind")
        if self.region is not None and not (0 <= self.region[0] < self.region[1] and 0 <= self.region[2] < self.region[3]):
            raise problem(f"region: expected y0 < y1 and x0 < x1, all >= 0, got {list(self.region)}")
        return self


class Trigger(Section):
    """A closed-loop output: when its `rule` fires on a decoded frame, a message or pulse goes out
    (never on a frame older than max_age_ms)."""

    name: Name = Field(description="a name for logs, stats and the recording")
    rule: TriggerRule | None = Field(None, description="when it fires (required by `rtdecode run`)")
    kind: Annotated[str, OneOf(TRIGGER_KINDS)] = Field(
        description="the output: zmq (an rtframe 'trigger' message on a PUB socket), network_events (a TTL on the "
                    "Open Ephys Network Events plugin) or serial (a pulse on a serial line, pyserial)")
    address: Name = Field(description="tcp://HOST:PORT (zmq, network_events) or a serial device")
    line: Annotated[int, Range(ge=1, le=256)] | None = Field(
        None, description="the Network Events TTL line, from 1 (network_events only, required there)")
    # at least one of the GUI's processing blocks (1024 samples at 30 kHz is 34 ms), or the on and off
    # edges can land on the same sample number
    pulse_ms: Annotated[float, Range(ge=1.0, le=10000.0)] = Field(
        50.0, description="the Network Events pulse width, ms (at least one of the GUI's processing blocks)")
    min_interval_s: Annotated[float, Range(ge=0.0, le=3600.0)] = Field(
        0.0, description="the shortest time between two firings, s")

    @model_validator(mode="after")
    def _kind(self):
        if self.kind in ("zmq", "network_events"):
            try:
                check_endpoint(self.address)
            except ConfigError as exc:
                raise problem(f"address: {exc}") from None
        if self.kind == "network_events" and self.line is None:
            raise problem("line: network_events triggers need the TTL line (1..256)")
        return self


class Ttl(Section):
    """Hardware flip times on a TTL line of the Open Ephys Event Broadcaster (rtdecode.sources.flips)."""

    address: Endpoint = Field(description="the Event Broadcaster (JSON output), e.g. tcp://192.168.1.10:5557")
    line: Annotated[int, Range(ge=1, le=256)] = Field(description="the TTL line, numbered from 1 as in the GUI")
    edges: Annotated[str, OneOf(("rising", "both"))] = Field(
        "rising", description="which edges mark a flip (both: a photodiode patch alternating each flip)")
    tolerance_ms: Annotated[float, Range(gt=0.0, le=100.0)] = Field(
        8.0, description="how far an edge may be from the expected display latency, ms (8: half a 60 Hz frame)")
    max_latency_ms: Annotated[float, Range(gt=0.0, le=1000.0)] = Field(
        100.0, description="the longest display latency looked for before one is known, ms")


class Stimulus(Section):
    """When each stimulus frame started: the stim message's own time (sender) or a TTL edge (ttl)."""

    flip_times: Annotated[str, OneOf(("sender", "ttl"))] = Field(
        "sender", description="sender: a stimulus frame starts at its stim message's clock-corrected `t`; ttl: at "
                              "its TTL edge (a photodiode or the stimulus PC's frame clock, recorded by Open Ephys)")
    ttl: Ttl | None = Field(None, description="the TTL line (flip_times ttl only)")

    @model_validator(mode="after")
    def _ttl(self):
        if self.flip_times == "ttl" and self.ttl is None:
            raise problem("ttl: flip_times ttl needs ttl: {address: tcp://HOST:PORT, line: N}")
        if self.flip_times != "ttl" and self.ttl is not None:
            raise problem(f"ttl: only used with flip_times: ttl, not {self.flip_times}")
        return self
