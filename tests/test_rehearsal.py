"""The README's "Rehearse on the virtual rig" block: checked command by command (default run), and run
verbatim with bash (slow: a 60-s calibration block with raw frames, suite2p's cell detection on it, a
fit and a 30-s live session; `.ci/run` runs it).

The verbatim run happens in a fresh folder holding a copy of `configs/` (what the block reads from the
repository root), with this checkout's `rtdecode` first on the path. It binds the rig files' fixed
loopback ports (5555, 5570, 5560, 5561): another program on them makes it fail."""


import pytest

from rtdecode.cli_parser import build_parser
from tests import ROOT, readme_block, rtdecode_commands, run_block
from rtdecode.live.config import load_config

HEADING = "## Rehearse on the virtual rig"


def rehearsal_block() -> str:
    return readme_block(HEADING)


commands = rtdecode_commands


def test_the_rehearsal_block_does_the_whole_workflow_with_valid_commands():
    cmds = commands(rehearsal_block())
    parser = build_parser()
    parsed = [parser.parse_args(argv) for argv in cmds]  # SystemExit on any unknown flag or value
    names = [a.command for a in parsed]
    assert names[-1] == "inspect"
    runs = [a for a in parsed if a.command == "run"]
    assert len(runs) == 2 and all(a.record for a in runs)
    calib, live = (load_config(ROOT / a.config) for a in runs)
    assert calib.decoder is None and live.decoder is not None and live.triggers  # no model, then a model + a rule
    assert all(t.rule is not None for t in live.triggers)
    fits = [a for a in parsed if a.command == "fit"]
    assert len(fits) == 1 and fits[0].dataset == runs[0].record  # fitted on the recorded calibration block
    assert live.decoder.model.resolve() == (ROOT / fits[0].out).resolve()  # the live rig file uses that model
    assert parsed[-1].session == runs[1].record  # inspect the live session
    # a new field of view: no ground-truth ROIs; the block keeps raw frames, suite2p finds the cells in them,
    # the fit extracts the block with those ROIs, and the live rig file reads the same folder
    assert not any(a.write_rois for a in parsed if a.command == "rig")
    assert calib.extraction.two_photon.rois is None and calib.outputs.raw_frames is not None
    rois = [a for a in parsed if a.command == "rois"]
    assert len(rois) == 1 and rois[0].movie == [runs[0].record]
    assert fits[0].rois == rois[0].out
    assert live.extraction.two_photon.rois.resolve() == (ROOT / rois[0].out).resolve()
    assert names.index("rois") < names.index("fit")
    rigs = [a for a in parsed if a.command == "rig"]
    assert [a.tier for a in rigs if not a.prepare_only] == ["train", "oracle"]
    assert any(a.seconds == 30 for a in rigs if a.tier == "oracle")  # a 30-second live session


@pytest.mark.slow
def test_the_rehearsal_block_runs_verbatim(tmp_path):
    block = rehearsal_block()
    rc, out = run_block(block, tmp_path, timeout=1500)
    assert rc == 0, out[-6000:]
    assert "calibration block (no decoder): " in out and "stopped cleanly" in out, out[-6000:]
    assert (tmp_path / "models" / "virtual" / "card.json").is_file()
    assert (tmp_path / "data" / "virtual" / "rois" / "rois.json").is_file()  # found by `rtdecode rois`, not written by the rig
    assert (tmp_path / "sessions" / "rehearsal" / "live" / "end.json").is_file()
