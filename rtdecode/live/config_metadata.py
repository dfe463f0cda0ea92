"""The rig file's `session_metadata` section (rtdecode.live.config): the subject, experimenter,
institution and imaging plane for NWB / DANDI, checked as nwbinspector and DANDI check them, and
`resolve_session_metadata` (a session's recorded metadata with `rtdecode export`'s overrides)."""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Annotated

from pydantic import BeforeValidator, Field, ValidationError, field_validator

from rtdecode.live.config_checks import Name, NonEmpty, OneOf, Range, Section, config_error, one_or_many, problem


# ISO 8601 durations (e.g. P90D, P12W, P1Y2M) and the species forms NWB and DANDI accept (as nwbinspector checks them)
ISO_DURATION = (r"P(?!$)(\d+(?:\.\d+)?Y)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?W)?(\d+(?:\.\d+)?D)?"
                r"(T(?=\d)(\d+(?:\.\d+)?H)?(\d+(?:\.\d+)?M)?(\d+(?:\.\d+)?S)?)?")
SPECIES_FORM = r"([A-Z][a-z]* [a-z]+)|(http://purl\.obolibrary\.org/obo/NCBITaxon_\d+)"
PERSON_FORM = r"([\w\s\-\.']+),\s+([\w\s\-\.']+)"  # 'Last, First' (DANDI's name pattern)


def _age(v):
    """An ISO 8601 duration, or a range 'LOW/HIGH' or 'LOW/' (NWB's extension for an age known to a range)."""
    if not isinstance(v, str):
        raise problem(f"{v!r} is not text; give an ISO 8601 duration such as P90D (90 days) or P12W")
    parts = v.split("/")
    if len(parts) > 2 or not re.fullmatch(ISO_DURATION, parts[0]) or (
            len(parts) == 2 and parts[1] and not re.fullmatch(ISO_DURATION, parts[1])):
        raise problem(f"{v!r} is not an ISO 8601 duration; e.g. P90D (90 days), P12W, P1Y2M, or a range "
                      "P60D/P90D, or P90D/ (90 days or older)")
    return v


def _date_of_birth(v):
    """An ISO 8601 date or date-time (kept as written; a date is midnight UTC in the NWB file)."""
    if isinstance(v, (datetime.date, datetime.datetime)):
        return v.isoformat()
    try:
        datetime.datetime.fromisoformat(v)
    except (TypeError, ValueError):
        raise problem(f"{v!r} is not an ISO 8601 date; e.g. 2026-09-01 or 2026-09-01T08:00:00+01:00") from None
    return v


class Subject(Section):
    """The animal (NWB Subject; DANDI requires subject_id, species, sex and an age or date of birth)."""

    subject_id: Name | None = Field(None, description="the animal's id in the lab (no '/': DANDI builds paths from "
                                                      "it); required by DANDI")
    species: str | None = Field(None, description="Latin binomial, e.g. Mus musculus, or an NCBI taxonomy IRI "
                                                  "(http://purl.obolibrary.org/obo/NCBITaxon_10090)")
    sex: Annotated[str, OneOf(("M", "F", "U", "O"))] | None = Field(
        None, description="M, F, U (unknown) or O (other)")
    age: Annotated[str, BeforeValidator(_age)] | None = Field(
        None, description="ISO 8601 duration at the session, e.g. P90D; a range P60D/P90D or P90D/ if not known "
                          "exactly (give age or date_of_birth)")
    date_of_birth: Annotated[str, BeforeValidator(_date_of_birth)] | None = Field(
        None, description="ISO 8601 date or date-time, e.g. 2026-09-01 (a date: midnight UTC)")
    strain: Name | None = Field(None, description="e.g. C57BL/6J, or a transgenic line such as Ai148 x Cux2-CreERT2")
    genotype: Name | None = Field(None, description="the genetic modification, if any")
    description: Name | None = Field(None, description="anything else about the animal (e.g. surgery, window)")

    @field_validator("subject_id")
    @classmethod
    def _no_slash(cls, v):
        if v is not None and "/" in v:
            raise problem(f"{v!r} contains '/'; DANDI builds file paths from it: use '-' or '_'")
        return v

    @field_validator("species")
    @classmethod
    def _species(cls, v):
        if v is not None and not re.fullmatch(SPECIES_FORM, v):
            raise problem(f"{v!r}: give the Latin binomial (e.g. Mus musculus, Rattus norvegicus) or an NCBI "
                          "taxonomy IRI (http://purl.obolibrary.org/obo/NCBITaxon_10090)")
        return v


class ImagingPlaneInfo(Section):
    """Where and what the two-photon microscope images (NWB ImagingPlane, OpticalChannel)."""

    location: Name | None = Field(None, description="the brain area, as an Allen Mouse Brain CCF name or acronym "
                                                    "(e.g. VISp, or Primary visual area)")
    indicator: Name | None = Field(None, description="the calcium indicator, e.g. GCaMP6s, jGCaMP8m")
    excitation_nm: Annotated[float, Range(ge=200.0, le=2000.0)] | None = Field(
        None, description="the excitation wavelength, nm (e.g. 920)")
    emission_nm: Annotated[float, Range(ge=200.0, le=2000.0)] | None = Field(
        None, description="the emission filter's centre wavelength, nm (e.g. 510)")


class SessionMetadata(Section):
    """Who recorded what, for the NWB file (`rtdecode export --nwb`) and DANDI; recorded into
    session.json with the rig file. `rtdecode export` options override these keys."""

    subject: Subject | None = Field(None, description="the animal")
    experimenter: Annotated[list[str], NonEmpty, BeforeValidator(one_or_many)] | None = Field(
        None, description="'Last, First' or a list of them")
    institution: Name | None = Field(None, description="e.g. University College London")
    lab: Name | None = Field(None, description="the lab's name")
    experiment_description: Name | None = Field(None, description="what the experiment is about, a sentence or two")
    keywords: Annotated[list[Name], NonEmpty] | None = Field(
        None, description="search terms added to rtdecode's own (closed-loop, neural decoding, ...)")
    imaging_plane: ImagingPlaneInfo | None = Field(None, description="two-photon: the imaged area and indicator")

    @field_validator("experimenter")
    @classmethod
    def _people(cls, v):
        for name in v or []:
            if not re.fullmatch(PERSON_FORM, name):
                raise problem(f"{name!r}: write 'Last, First' (e.g. 'Doe, Jane'), the form NWB and DANDI read")
        return v


def parse_session_metadata(data, source: str = "session_metadata") -> SessionMetadata:
    """A SessionMetadata from a dict (the rig file's section, or `rtdecode export` options);
    ConfigError names the key and what is allowed."""
    try:
        return SessionMetadata.model_validate(data or {})
    except ValidationError as exc:
        raise config_error(exc, source) from None


def resolve_session_metadata(session: str | Path, overrides: dict | None = None) -> dict:
    """The metadata `rtdecode export` writes: the rig file's `session_metadata` as recorded in the
    session's session.json, each key overridden by `overrides` (the export options; the subject and
    the imaging plane field by field), checked by SessionMetadata as a whole. ConfigError names
    the key and what is allowed."""
    from rtdecode.offline.nwb_export import merge_metadata, recorded_metadata

    merged = merge_metadata(recorded_metadata(session), overrides)
    return parse_session_metadata(merged, "session metadata (the rig file's session_metadata recorded in "
                                          "session.json, then the export options)").model_dump(exclude_none=True)
