"""`rtdecode bench ...`: the extract benchmark writes its JSON (tiny settings: plumbing, not speed); every
benchmark is reachable; results record the commit, packages and machine."""

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


def test_every_benchmark_is_a_module_with_main_and_the_cli_lists_it():
    import ast
    import importlib.util

    from rtdecode.bench import BENCHES
    from rtdecode.cli_parser import build_parser

    for name in BENCHES:
        spec = importlib.util.find_spec(f"rtdecode.bench.{name}")
        assert spec is not None, name
        tree = ast.parse(open(spec.origin).read())
        assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), name
        args = build_parser().parse_args(["bench", name, "--help"])
        assert args.bench == name and args.args == ["--help"]  # handed to the benchmark's own parser


def test_machine_info_records_commit_packages_and_machine():
    from rtdecode.bench import machine_info

    m = machine_info(extra_field=1)
    assert set(m["git"]) == {"commit", "dirty"}
    for p in ("numpy", "numba", "torch", "onnxruntime", "pyzmq", "rtdecode"):
        assert p in m["packages"]
    for k in ("cpu", "cpu_count", "memory_gib", "os"):
        assert k in m
    assert m["extra_field"] == 1
