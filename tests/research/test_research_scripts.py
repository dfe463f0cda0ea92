"""The research benchmarks are scripts in benchmarks/research/, apart from the package: each has
`main(argv)` whose --help answers as `python benchmarks/research/NAME.py`, and `python SCRIPT --help`
runs from the repository root as the docs give it; none of them is left in rtdecode.bench."""

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.research.conftest import RESEARCH

SCRIPTS = sorted(p.stem for p in RESEARCH.glob("*.py") if p.stem != "research_common")
USER_BENCHES = {"extract", "decode", "e2e", "soak", "hostile"}


def test_rtdecode_bench_lists_exactly_the_user_benchmarks():
    import rtdecode.bench as bench
    from rtdecode.bench import BENCHES

    assert set(BENCHES) == USER_BENCHES
    package = Path(bench.__file__).parent
    assert not [n for n in SCRIPTS if (package / f"{n}.py").exists()], "a research benchmark is still in rtdecode/bench/"
    assert "decoder_report" in SCRIPTS and "residual_table" in SCRIPTS and len(SCRIPTS) >= 14, SCRIPTS


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_has_main_and_answers_help(name, capsys):
    tree = ast.parse((RESEARCH / f"{name}.py").read_text(encoding="utf-8"))
    assert any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body), name
    assert any(isinstance(n, ast.If) and "__main__" in ast.unparse(n.test) for n in tree.body), name
    mod = importlib.import_module(name)
    with pytest.raises(SystemExit) as done:
        mod.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python benchmarks/research/{name}.py"), out[:200]


def test_a_script_runs_as_the_docs_give_it():
    """`python benchmarks/research/NAME.py --help` from the repository root, in a fresh interpreter
    whose path does not name the checkout: research_common puts it there."""
    root = RESEARCH.parents[1]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "benchmarks/research/ridge_rank.py", "--help"], cwd=root, env=env,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.startswith("usage: python benchmarks/research/ridge_rank.py")
