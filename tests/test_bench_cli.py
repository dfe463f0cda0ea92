"""`rtdecode bench extract` writes its JSON (tiny settings: this checks the plumbing, not speed)."""

import json

from rtdecode.cli import main


def test_bench_extract_writes_both_columns(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench", "extract", "--json", str(out), "--frames", "10", "--rois", "20",
                 "--shape", "96", "96", "--ephys-seconds", "0.1"]) == 0
    d = json.loads(out.read_text())
    for column in ("optimised", "numpy_reference"):
        chain = d["twophoton"][column]["chain"]
        assert 0 < chain["p50_ms"] <= chain["p99_ms"]
    assert d["config"]["frames"] == 10 and d["config"]["rois"] == 20
