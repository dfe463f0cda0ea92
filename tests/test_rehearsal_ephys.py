"""The README's "Rehearse an electrophysiology rig" block: checked command by command (default run), and
run verbatim with bash (slow: a 120-s calibration block on the 64-channel virtual probe, a fit and a
30-s live session; `.ci/run` runs it).

The verbatim run happens in a fresh folder holding a copy of `configs/`, with this checkout's `rtdecode`
first on the path. It binds the rig files' fixed loopback ports 5580-5585 (apart from the two-photon
rehearsal's 5555, 5570, 5560, 5561): another program on them makes it fail."""

import json

import pytest

from rtdecode.cli_parser import build_parser
from tests import ROOT, readme_block, rtdecode_commands, run_block
from rtdecode.live.config import load_config
from rtdecode.sources.address import split_endpoint

HEADING = "## Rehearse an electrophysiology rig"
TWO_PHOTON_PORTS = {5555, 5570, 5560, 5561}


def rehearsal_block() -> str:
    return readme_block(HEADING)


commands = rtdecode_commands


def test_the_ephys_rehearsal_block_does_the_whole_workflow_with_valid_commands():
    parser = build_parser()
    parsed = [parser.parse_args(argv) for argv in commands(rehearsal_block())]  # SystemExit on a bad flag
    names = [a.command for a in parsed]
    assert names[-2:] == ["inspect", "export"]
    rigs = [a for a in parsed if a.command == "rig"]
    assert all(a.ephys for a in rigs) and [a.tier for a in rigs] == ["train", "oracle"]
    runs = [a for a in parsed if a.command == "run"]
    assert len(runs) == 2 and all(a.record for a in runs)
    calib, live = (load_config(ROOT / a.config) for a in runs)
    assert calib.decoder is None and live.decoder is not None and live.triggers  # no model, then model + rule
    assert calib.source.protocol == live.source.protocol == "openephys"
    fits = [a for a in parsed if a.command == "fit"]
    assert len(fits) == 1 and fits[0].dataset == runs[0].record
    assert live.decoder.model.resolve() == (ROOT / fits[0].out).resolve()
    assert parsed[names.index("inspect")].session == runs[1].record
    assert parsed[-1].session == runs[1].record and parsed[-1].nwb
    # the probe the rig streams is the one the rig files read, on their ports
    for rig, cfg in zip(rigs, (calib, live)):
        assert len(cfg.source.channels) == rig.probe_channels
        assert split_endpoint(cfg.source.address[0])[1] == rig.data_port
        assert cfg.source.heartbeat_port == rig.data_port + 1
        assert cfg.source.stim_address == rig.stim
    ports = {split_endpoint(a)[1] for cfg in (calib, live) for a in
             [*cfg.source.address, cfg.source.stim_address, cfg.outputs.publish, *(t.address for t in cfg.triggers)]}
    assert not ports & TWO_PHOTON_PORTS
    assert any(a.seconds == 30 for a in rigs if a.tier == "oracle")


@pytest.mark.slow
def test_the_ephys_rehearsal_block_runs_verbatim(tmp_path):
    block = rehearsal_block()
    rc, out = run_block(block, tmp_path, timeout=1200)
    assert rc == 0, out[-6000:]
    assert "calibration block (no decoder): " in out and "stopped cleanly" in out, out[-6000:]
    assert "live pixel_corr " in out and "acquired -> published (ms): p50 " in out, out[-6000:]
    assert (tmp_path / "models" / "virtual_ephys" / "card.json").is_file()
    assert (tmp_path / "sessions" / "ephys" / "live.nwb").is_file()
    end = json.loads((tmp_path / "sessions" / "ephys" / "live" / "end.json").read_text())
    stats = end.get("stats", end)
    assert stats["live_quality"]["frames"] > 0 and stats["published"] > 0, stats
    assert {"bandpass", "common_reference", "detect", "bin", "decode"} <= set(stats["stages_ms"])
