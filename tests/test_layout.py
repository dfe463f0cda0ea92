"""The package reads as the data flow: no import cycles, and imports flow one way (docs/design.md 4).

Walks every module's AST, function-level imports included (a cycle hidden inside a function is
still a cycle); heavy third-party imports are not rtdecode modules and are not looked at.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import rtdecode

ROOT = Path(rtdecode.__file__).parent

# Lower layers never import higher ones. Foundation modules serve everything.
LAYERS = [
    ("rtdecode.errors", "rtdecode.latency", "rtdecode.metrics", "rtdecode.stage", "rtdecode.stimuli"),
    ("rtdecode.sources",),
    ("rtdecode.extract",),
    ("rtdecode.decode",),
    ("rtdecode.outputs",),
    ("rtdecode.offline",),
    ("rtdecode.rig",),
    ("rtdecode.live",),
    ("rtdecode.bench",),
    ("rtdecode.cli", "rtdecode.cli_parser", "rtdecode.__main__", "rtdecode"),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = ["rtdecode", *p.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {m: set() for m in mods}
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                if node.module.split(".")[0] != "rtdecode":
                    continue
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    targets.append(full if full in mods else node.module)
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.split(".")[0] == "rtdecode"]
            for t in targets:
                if t in mods and t != m:
                    edges[m].add(t)
    return edges


def _layer(mod: str) -> int:
    best = None
    for i, prefixes in enumerate(LAYERS):
        for pre in prefixes:
            if mod == pre or mod.startswith(pre + "."):
                if best is None or len(pre) > best[1]:
                    best = (i, len(pre))
    assert best is not None, f"{mod} is in no layer; add it to LAYERS in {__file__}"
    return best[0]


def test_no_import_cycles():
    edges = _edges(_modules())
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_imports_flow_one_way():
    bad = []
    for m, targets in _edges(_modules()).items():
        if m == "rtdecode":
            continue
        for t in targets:
            if t == "rtdecode":  # the package itself only carries the version
                continue
            if _layer(t) > _layer(m):
                bad.append(f"{m} imports {t}")
    assert not bad, "imports against the data flow (docs/design.md 4):\n" + "\n".join(sorted(bad))


def test_sources_import_nothing_of_rtdecode_but_errors():
    bad = [f"{m} imports {t}" for m, ts in _edges(_modules()).items() if m.startswith("rtdecode.sources")
           for t in ts if not (t.startswith("rtdecode.sources") or t == "rtdecode.errors")]
    assert not bad, "\n".join(sorted(bad))


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The walker is not vacuous: a two-module cycle written to disk is reported."""
    pkg = tmp_path / "rtdecode"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from rtdecode import b\n")
    (pkg / "b.py").write_text("from rtdecode.a import f\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", pkg)
    edges = _edges(_modules())
    assert edges["rtdecode.a"] == {"rtdecode.b"} and edges["rtdecode.b"] == {"rtdecode.a"}


def test_architecture_layout_table_names_every_module():
    """docs/architecture.md's layout table matches the tree: every module is named there, every path
    named exists."""
    doc = (ROOT.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    section = doc[doc.index("## Layout"):]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `rtdecode/")]
    text = "\n".join(rows)
    missing = []
    for p in sorted(ROOT.rglob("*.py")):
        if p.name in ("__init__.py", "__main__.py"):
            continue
        if f"`{p.name}`" not in text and f"`{p.relative_to(ROOT.parent).as_posix()}`" not in text \
                and f"{p.name}`" not in text:
            missing.append(p.relative_to(ROOT.parent).as_posix())
    assert not missing, "modules missing from docs/architecture.md's layout table: " + ", ".join(missing)
    import re

    for path in re.findall(r"`(rtdecode/[^`]+)`", text):
        assert (ROOT.parent / path).exists(), f"docs/architecture.md's layout table names {path}, which does not exist"
