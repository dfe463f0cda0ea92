"""The rig file's `extraction` section (rtdecode.live.config): the two-photon chain (`two_photon`,
its `stages` from rtdecode.extract.stages and the older keys that set their stage's option) or the
ephys chain (`ephys`, `stages` of modality ephys). Import them from rtdecode.live.config."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, field_validator, model_validator

from rtdecode.errors import ConfigError
from rtdecode.extract import stages as stage_registry
from rtdecode.live.config_checks import NonEmpty, OneOf, Range, Section, problem


# the keys kept from before `stages`: (stage, option) each sets, where the stages list does not
LEGACY_STAGE_KEYS = {"crop": ("register", "crop"), "downsample": ("register", "downsample"),
                     "max_shift": ("register", "max_shift"), "neuropil_r": ("traces", "r"),
                     "tau_s": ("deconvolve", "tau_s")}


def _chain_spec(value):
    try:
        stage_registry.parse_spec(value)
    except ConfigError as exc:
        raise problem(str(exc)) from None
    return value


class ChainSection(Section):
    """A section that lists a chain of stages: its `chain_spec()` is checked when the rig file loads,
    so a bad stage list is reported with the other problems of the file."""

    @model_validator(mode="after")
    def _spec(self):
        try:
            self.chain_spec()
        except ConfigError as exc:
            raise problem(str(exc)) from None
        return self


class TwoPhoton(ChainSection):
    """The two-photon chain, one per plane: by default register -> ROI traces - neuropil -> dF/F ->
    deconvolve; `stages` lists it explicitly, each stage with its options
    ([extraction.two_photon.stages](#extractiontwo_photonstages-the-stage-registry))."""

    rois: Path | Annotated[list[Path], NonEmpty] | None = Field(
        None, description="suite2p folder (stat.npy, iscell.npy, ops.npy), or one per plane: a list in source.planes order; "
                    "the activity vector is the planes' activities one after the other (plane, then ROI order). "
                    "Multi-ROI scans (source.scan_rois): one folder per (plane, scan ROI), plane-major: "
                    "[p1 r1, p1 r2, ..., p2 r1, p2 r2, ...], e.g. suite2p's plane0, plane1, ... in that order. Leave it out only to record the raw frames of a new field of "
                    "view's calibration block (no decoder, outputs.raw_frames and frame_shape set), then find its cells "
                    "with `rtdecode rois SESSION --out DIR`")
    frame_shape: tuple[Annotated[int, Range(ge=8, le=8192)], Annotated[int, Range(ge=8, le=8192)]] | None = Field(
        None, description="the acquisition frame's size, px (height, width); needed without rois (with them: ops.npy's "
                          "Ly, Lx)")
    reference: Path | Annotated[list[Path], NonEmpty] | None = Field(
        None, description=".npy image to register to (one per plane, or per (plane, scan ROI) as rois); default: "
                          "ops['meanImg'] of the ROI folder")
    crop: tuple[Annotated[int, Range(ge=8, le=4096)], Annotated[int, Range(ge=8, le=4096)]] | None = Field(
        None, description="the centred region used for motion estimation, px (height, width); default 320 x 320, "
                          "clipped to the frame")
    downsample: Annotated[int, Range(ge=1, le=8)] | None = Field(
        None, description="the region is binned downsample x downsample before the FFT; default 2 where it is at "
                          "least 320 px on its shorter side, else 1 (docs/latency.md)")
    max_shift: Annotated[int, Range(ge=1, le=1024)] | None = Field(
        None, description="the largest motion searched, px (default: a quarter of the crop)")
    neuropil_r: Annotated[float, Range(ge=0.0, le=1.0)] = Field(
        0.7, description="neuropil subtraction factor: F - r * Fneu")
    tau_s: Annotated[float, Range(gt=0.0, le=10.0)] = Field(
        0.7, description="the indicator's decay time, s (GCaMP6s ~0.7)")
    fps: Annotated[float, Range(gt=0.0, le=2000.0)] = Field(
        30.0, description="the frame rate, Hz (the volume rate with several planes)")
    frame_dtype: Annotated[str, OneOf(("uint16", "int16"))] = Field(
        "uint16", description="the raw frames' type (ScanImage acquires int16)")
    stages: Annotated[list, BeforeValidator(_chain_spec)] | None = Field(
        None, description="the chain's stages in order, each a name or {name: {options}}, e.g. [{register: {crop: "
                          "[256, 256]}}, traces, dff, {deconvolve: {method: oasis, lag: 3}}]; default: register, "
                          "traces, dff, deconvolve. crop, downsample, max_shift, neuropil_r and tau_s above set "
                          "their stage's option where this list does not")


    def chain_spec(self) -> list[dict]:
        """The chain spec for rtdecode.extract.build_chain: `stages` (or the default chain) with the
        keys of LEGACY_STAGE_KEYS filled in; ConfigError where a key and the list both set an option."""
        entries = [(name, opts.model_dump(exclude_unset=True)) for name, opts in stage_registry.parse_spec(self.stages)]
        for key, (stage, option) in LEGACY_STAGE_KEYS.items():
            value, given = getattr(self, key), key in self.model_fields_set
            targets = [opts for name, opts in entries if name == stage]
            if given and not targets:
                raise ConfigError(f"stages: {key} is set but the list has no {stage} stage; set its option there")
            for opts in targets:
                if option in opts and given:
                    raise ConfigError(f"stages: {key} and {stage}'s {option} are both set; keep one")
                if option not in opts and value is not None:
                    opts[option] = tuple(value) if isinstance(value, (list, tuple)) else value
        return [{name: opts} for name, opts in entries]

    @property
    def rois_per_plane(self) -> list[Path]:
        """One suite2p folder per field: per plane, or per (plane, scan ROI) plane-major ([] without rois)."""
        if self.rois is None:
            return []
        return list(self.rois) if isinstance(self.rois, list) else [self.rois]

    @property
    def reference_per_plane(self) -> list[Path | None]:
        if self.reference is None:
            return [None] * len(self.rois_per_plane)
        return list(self.reference) if isinstance(self.reference, list) else [self.reference]


# the keys kept from before `stages`: (stage, option) each sets, where the stages list does not
LEGACY_EPHYS_KEYS = {"band_hz": ("bandpass", "band"), "threshold": ("detect", "k"),
                     "threshold_uv": ("detect", "threshold_uv"), "reference": ("common_reference", "method")}


def _ephys_spec(value):
    try:
        stage_registry.parse_spec(value, "ephys")
    except ConfigError as exc:
        raise problem(str(exc)) from None
    return value


class Ephys(ChainSection):
    """The ephys chain: band-pass -> common reference -> threshold crossings -> spike counts per bin
    (openephys), or sorted spikes binned per electrode / unit (eventbroadcaster); `stages` lists it
    explicitly, each stage with its options
    ([extraction.ephys.stages](#extractionephysstages-the-ephys-stage-registry))."""

    band_hz: tuple[Annotated[float, Range(gt=0.0)], Annotated[float, Range(gt=0.0)]] | None = Field(
        (300.0, 6000.0), description="band-pass edges, Hz (low, high); null: no filter")
    threshold: Annotated[float, Range(gt=0.0, le=50.0)] = Field(
        4.5, description="detection threshold, x the channel's robust noise (negative crossings)")
    threshold_uv: Annotated[float, Range(gt=0.0, le=10000.0)] | None = Field(
        None, description="an absolute detection level, uV, instead of `threshold`")
    reference: Annotated[str, OneOf(("mean", "median"))] | None = Field(
        "mean", description="common reference over channels; null: none")
    bin_ms: Annotated[float, Range(ge=1.0, le=1000.0)] = Field(
        33.3, description="the activity bin, ms: one decoder input vector per bin")
    block_samples: Annotated[int, Range(ge=16, le=65536)] = Field(
        1024, description="the extraction's block capacity, samples: blocks are cut at bin edges and at most this long")
    stages: Annotated[list, BeforeValidator(_ephys_spec)] | None = Field(
        None, description="the chain's stages in order, each a name or {name: {options}}, e.g. [{bandpass: {band: "
                          "[300, 3000], order: 2}}, common_reference, {detect: {k: 5}}, bin]; default: bandpass, "
                          "common_reference, detect, bin (openephys), bin_units (eventbroadcaster). band_hz, "
                          "threshold, threshold_uv and reference above set their stage's option where this list "
                          "does not (reference null: no common_reference stage)")

    @field_validator("band_hz")
    @classmethod
    def _band(cls, v):
        if v is not None and not v[0] < v[1]:
            raise problem(f"low edge {v[0]} must be below the high edge {v[1]}")
        return v


    def chain_spec(self, default=stage_registry.DEFAULT_EPHYS_STAGES) -> list[dict]:
        """The chain spec for rtdecode.extract.ephys_stages.build_ephys_stages: `stages` (or `default`,
        the protocol's default chain) with the keys of LEGACY_EPHYS_KEYS filled in where the chain has
        their stage (`reference: null` drops common_reference from the default chain); ConfigError
        where a key and the list both set an option, or a key is set for a stage the list lacks."""
        listed = self.stages is not None
        spec = self.stages if listed else list(default)
        entries = [(name, opts.model_dump(exclude_unset=True)) for name, opts in stage_registry.parse_spec(spec, "ephys")]
        if not listed and self.reference is None:
            entries = [(name, opts) for name, opts in entries if name != "common_reference"]
        for key, (stage, option) in LEGACY_EPHYS_KEYS.items():
            value, given = getattr(self, key), key in self.model_fields_set
            targets = [opts for name, opts in entries if name == stage]
            if listed and given and not targets and not (key == "reference" and value is None):
                raise ConfigError(f"stages: {key} is set but the list has no {stage} stage; set its option there")
            for opts in targets:
                if given and (option in opts or (key == "reference" and value is None)):
                    raise ConfigError(f"stages: {key} and {stage}'s {option} are both set; keep one")
                if option not in opts:
                    opts[option] = tuple(value) if isinstance(value, (list, tuple)) else value
        return [{name: opts} for name, opts in entries]


class Extraction(Section):
    """Exactly one of two_photon, ephys: the one the source protocol needs."""

    two_photon: TwoPhoton | None = Field(None, description="two-photon extraction")
    ephys: Ephys | None = Field(None, description="ephys extraction")

    @model_validator(mode="after")
    def _one(self):
        if (self.two_photon is None) == (self.ephys is None):
            raise problem("give exactly one of two_photon, ephys")
        return self
