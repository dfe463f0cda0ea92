"""The rig file's optional `session_metadata` section (subject, experimenter, institution, imaging
plane: for NWB and DANDI): unknown keys refused, values checked, the error naming the key."""

import copy
import re

import pytest

from rtdecode.errors import ConfigError
from rtdecode.live.config import parse_config

BASE = {
    "source": {"protocol": "rtframe", "address": "tcp://127.0.0.1:5555"},
    "extraction": {"two_photon": {"rois": "rois"}},
    "decoder": {"model": "m"},
    "session_metadata": {
        "subject": {"subject_id": "m1", "species": "Mus musculus", "sex": "F", "age": "P90D",
                    "date_of_birth": "2026-09-01", "strain": "C57BL/6J"},
        "experimenter": "Doe, Jane", "institution": "U", "lab": "L", "experiment_description": "closed loop",
        "imaging_plane": {"location": "VISp", "indicator": "GCaMP6s", "excitation_nm": 920},
    },
}


def _with(path, value):
    data = copy.deepcopy(BASE)
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return data


def test_a_complete_section_loads_and_is_optional():
    md = parse_config(BASE).session_metadata
    assert md.subject.age == "P90D" and md.experimenter == ["Doe, Jane"] and md.imaging_plane.location == "VISp"
    data = copy.deepcopy(BASE)
    del data["session_metadata"]
    assert parse_config(data).session_metadata is None
    # YAML reads an unquoted date as a date: kept as ISO 8601 text
    import datetime

    md = parse_config(_with(["session_metadata", "subject", "date_of_birth"], datetime.date(2026, 9, 1))).session_metadata
    assert md.subject.date_of_birth == "2026-09-01"
    assert parse_config(BASE).model_dump(mode="json")["session_metadata"]["subject"]["subject_id"] == "m1"


@pytest.mark.parametrize("path, value, message", [
    (["session_metadata", "subjekt"], {}, "session_metadata.subjekt: unknown key; allowed here: subject,"),
    (["session_metadata", "subject", "weight"], "20 g", "session_metadata.subject.weight: unknown key"),
    (["session_metadata", "subject", "age"], "3 months", "session_metadata.subject.age: '3 months' is not an ISO 8601"),
    (["session_metadata", "subject", "age"], "P90D/P1Y/P2Y", "session_metadata.subject.age: 'P90D/P1Y/P2Y'"),
    (["session_metadata", "subject", "sex"], "male", "session_metadata.subject.sex: 'male' is not one of M, F, U, O"),
    (["session_metadata", "subject", "species"], "mouse", "session_metadata.subject.species: 'mouse': give the Latin"),
    (["session_metadata", "subject", "subject_id"], "a/b", "session_metadata.subject.subject_id: 'a/b' contains '/'"),
    (["session_metadata", "subject", "date_of_birth"], "2026-13-01", "session_metadata.subject.date_of_birth"),
    (["session_metadata", "experimenter"], ["Jane Doe"], "session_metadata.experimenter: 'Jane Doe': write 'Last, First'"),
    (["session_metadata", "imaging_plane", "excitation_nm"], 9, "session_metadata.imaging_plane.excitation_nm: 9 is out"),
    (["session_metadata", "imaging_plane", "area"], "V1", "session_metadata.imaging_plane.area: unknown key"),
])
def test_mistakes_name_the_key(path, value, message):
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        parse_config(_with(path, value))


@pytest.mark.parametrize("age", ["P90D", "P12W", "P1Y2M", "P60D/P90D", "P90D/", "PT36H"])
def test_iso_8601_ages_and_ranges_load(age):
    assert parse_config(_with(["session_metadata", "subject", "age"], age)).session_metadata.subject.age == age
