"""docs/rig-file.md is generated from the rig file's models (rtdecode.live.config) and is current;
every key of every section is in it."""

from pathlib import Path

from pydantic import BaseModel

from rtdecode.live import config as cfg
from rtdecode.live.config_docs import DOC, main, render, render_doc


def test_the_committed_rig_file_reference_is_current():
    assert DOC.is_file(), f"{DOC} is missing: run python -m rtdecode.live.config_docs"
    assert DOC.read_text(encoding="utf-8") == render_doc(), \
        "docs/rig-file.md is out of date: run python -m rtdecode.live.config_docs and commit it"


def _keys(model: type[BaseModel], path: str = ""):
    for name, info in model.model_fields.items():
        key = f"{path}.{name}" if path else name
        yield model, name, key, info
        sub = render(info.annotation)[2]
        if sub is not None:
            yield from _keys(sub, key + ("[]" if "list" in render(info.annotation)[0] else ""))


def test_every_key_has_a_description_and_a_row():
    text = render_doc()
    for model, name, key, info in _keys(cfg.RigConfig):
        assert info.description, f"{key} has no Field(description=...)"
        section = key.rsplit(".", 1)[0] if "." in key else None
        head = f"## `{section}`" if section else "## Top level"
        body = text.split(head + "\n", 1)[1].split("\n## ", 1)[0]
        assert f"`{name}`" in body, f"{key} has no row under {head}"


def test_types_ranges_choices_and_protocols_come_from_the_models():
    text = render_doc()
    assert "| `protocol` | text | **required** | one of `rtframe`, `openephys`, `eventbroadcaster`, `scanimage_zmq`" in text
    assert "| `tau_s` | number | `0.7` | (0, 10] |" in text
    assert "| `crop` | [integer, integer] | not set | each [8, 4096] |" in text
    assert "| `downsample` | integer | not set | [1, 8] |" in text
    assert "| `channel` | integer | not set | [1, 64] |" in text and "(only with protocol `rtframe` or `scanimage_zmq`)" in text
    assert "`blas_threads`" in text and "[`rule`](#triggersrule)" in text


def test_check_mode_reports_a_stale_file(tmp_path: Path):
    out = tmp_path / "rig-file.md"
    assert main(["--out", str(out), "--check"]) == 1  # missing
    assert main(["--out", str(out)]) == 0 and main(["--out", str(out), "--check"]) == 0
    out.write_text(out.read_text() + "edited by hand\n")
    assert main(["--out", str(out), "--check"]) == 1
