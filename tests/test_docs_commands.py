"""Every command the documentation gives is one the command line accepts, without running it.

Walks README.md, docs/*.md, benchmarks/*.md and drivers/*/README.md. A command is a line of a code
block (fenced, or indented four spaces) or an inline code span that starts with `rtdecode`,
`python -m rtdecode...` or `python benchmarks/...py` (after `$ `, `taskset -c N`, `nice -n N`,
`timeout N`, `flock FILE`).
- In a code block the command must parse as written: the sub-command exists, every flag exists,
  every value is allowed (argparse's own check; it exits on the first problem).
- An inline span may be a fragment ("`rtdecode fit --compress 0` turns it off"): its sub-command
  must exist and every flag it names must belong to that sub-command.
`rtdecode bench NAME ...` and `python -m rtdecode.MODULE ...` are checked against the module's own
parser: its `main(argv)` runs with `ArgumentParser.parse_args` stopped right after parsing, so no
benchmark runs. Every benchmark the documentation names is in `rtdecode.bench.BENCHES`.
`python benchmarks/...py ARGS` (the research benchmarks, benchmarks/research/NAME.py, and the
experiment scripts): the script must exist; one with `main(argv)` is checked the same way as a
module (imported from its folder); one without (a script that parses at import) runs with `--help`
in a child process, and every flag the docs give must be in that help.
"""

from __future__ import annotations

import argparse
import ast
import functools
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from rtdecode.bench import BENCHES
from rtdecode.cli_parser import build_parser

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"[A-Z][A-Z_]*")  # NAME, DIR: a word the reader replaces (inline spans only)
PREFIXES = (("taskset", 2), ("nice", 2), ("timeout", 1), ("flock", 1), ("$", 0))


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md")),
             *sorted((ROOT / "drivers").glob("*/README.md"))]
    return [f for f in files if f.is_file()]


def _block_lines(text: str) -> list[str]:
    """Lines of fenced code blocks and of four-space indented blocks, backslash continuations joined."""
    out, fenced, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            continue
        line = pending + line.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        out.append(line)
    return out


def _inline_spans(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return [s for s in re.findall(r"`([^`\n]+)`", text)]


def _argv(command: str) -> list[str] | None:
    """['rtdecode' | 'python', '-m', MODULE, ...args] of one shell command, or None if it is not ours."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None
    while words:
        for name, skip in PREFIXES:
            if words[0] == name:
                words = words[1 + skip:] if name != "timeout" else words[2:]
                break
        else:
            break
    if words and words[-1] == "&":
        words = words[:-1]
    if words[:1] == ["rtdecode"] or (words[:2] == ["python", "-m"] and len(words) > 2
                                     and words[2].split(".")[0] == "rtdecode"):
        return words
    if words[:1] == ["python"] and len(words) > 1 and _is_script(words[1]):
        return words
    return None


def _is_script(word: str) -> bool:
    """A repository script the docs run: benchmarks/...py."""
    return word.startswith("benchmarks/") and word.endswith(".py")


def _commands(text: str, inline: bool) -> list[list[str]]:
    found = []
    for piece in (_inline_spans(text) if inline else _block_lines(text)):
        for part in re.split(r"\s(?:&&|\|\||;)\s", piece):
            argv = _argv(part)
            if argv is not None:
                found.append(argv)
    return found


def documented() -> list[tuple[str, list[str], bool]]:
    """(file, argv, strict) of every documented command."""
    out = []
    for f in doc_files():
        text = f.read_text(encoding="utf-8")
        rel = str(f.relative_to(ROOT))
        out += [(rel, a, True) for a in _commands(text, inline=False)]
        out += [(rel, a, False) for a in _commands(text, inline=True)]
    return out


class _Parsed(Exception):
    def __init__(self, parser, namespace):
        self.parser, self.namespace = parser, namespace


def module_parser(module: str, argv: list[str], monkeypatch) -> argparse.ArgumentParser:
    """The parser `module.main(argv)` builds, after it parsed `argv` (SystemExit if it refused them)."""
    real = argparse.ArgumentParser.parse_args

    def stop(self, args=None, namespace=None):
        raise _Parsed(self, real(self, args, namespace))

    mod = importlib.import_module(module)
    assert hasattr(mod, "main"), f"{module} has no main(argv)"
    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", stop)
        try:
            mod.main(argv)
        except _Parsed as done:
            return done.parser
    raise AssertionError(f"{module}.main did not parse its arguments with argparse")


def _sub(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None


def _flags_exist(parser: argparse.ArgumentParser, words: list[str]) -> list[str]:
    """The flags in `words` that `parser` (or the sub-command the words select) does not have."""
    bad = []
    for w in words:
        sub = _sub(parser, w)
        if sub is not None:
            parser = sub
            continue
        if w.startswith("-") and not re.fullmatch(r"-\d.*", w):
            flag = w.split("=", 1)[0]
            if flag not in parser._option_string_actions:
                bad.append(flag)
    return bad


def _script_module(script: str) -> str:
    """Import benchmarks/.../NAME.py as NAME, its folder first on sys.path (as `python SCRIPT` has it)."""
    path = ROOT / script
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return path.stem


def _has_main_argv(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" and n.args.args for n in tree.body)


@functools.lru_cache(maxsize=None)
def _script_help(script: str) -> str:
    """`python SCRIPT --help` from the repository root: its output (the script exits 0)."""
    res = subprocess.run([sys.executable, script, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, f"python {script} --help: exit {res.returncode}\n{res.stderr[-2000:]}"
    return res.stdout


def check_script(argv: list[str], strict: bool, monkeypatch) -> None:
    """python benchmarks/...py ARGS"""
    script, args = argv[1], argv[2:]
    path = ROOT / script
    if PLACEHOLDER.fullmatch(path.stem) and not strict:
        return  # "`python benchmarks/research/NAME.py`" in prose
    assert path.is_file(), f"python {script}: no such script"
    if _has_main_argv(path):
        module = _script_module(script)
        if strict:
            module_parser(module, args, monkeypatch)
        else:
            p = _parser_of(module, monkeypatch)
            assert not _flags_exist(p, args), f"{script}: unknown flags {_flags_exist(p, args)}"
        return
    usage = _script_help(script)
    known = set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", usage))
    bad = [w.split("=", 1)[0] for w in args if w.startswith("-") and not re.fullmatch(r"-\d.*", w)
           and w.split("=", 1)[0] not in known]
    assert not bad, f"python {script}: flags not in its --help: {bad}"


def check(argv: list[str], strict: bool, monkeypatch) -> None:
    if argv[0] == "python" and _is_script(argv[1]):
        return check_script(argv, strict, monkeypatch)
    if argv[0] == "python":  # python -m rtdecode.MODULE ARGS
        module, args = argv[2], argv[3:]
        if PLACEHOLDER.fullmatch(module.rsplit(".", 1)[-1]) and not strict:
            return  # "`python -m rtdecode.bench.NAME`" in prose
        if module in ("rtdecode", "rtdecode.cli"):
            return check(["rtdecode", *args], strict, monkeypatch)
        if strict:
            module_parser(module, args, monkeypatch)
        else:
            p = _parser_of(module, monkeypatch)
            assert not _flags_exist(p, args), f"{module}: unknown flags {_flags_exist(p, args)}"
        return
    args = argv[1:]
    parser = build_parser()
    if args[:1] == ["bench"] and len(args) > 1 and not args[1].startswith("-"):
        name = args[1]
        if PLACEHOLDER.fullmatch(name) and not strict:
            return  # "`rtdecode bench NAME --help`" in prose
        assert name in BENCHES, f"rtdecode bench {name}: not a benchmark (rtdecode.bench.BENCHES)"
        check(["python", "-m", f"rtdecode.bench.{name}", *args[2:]], strict, monkeypatch)
        return
    if strict:
        parser.parse_args(args)  # SystemExit on any unknown sub-command, flag or value
        return
    assert args and _sub(parser, args[0]) is not None, f"rtdecode {args[:1]}: no such sub-command"
    bad = _flags_exist(parser, args)
    assert not bad, f"rtdecode {args[0]}: unknown flags {bad}"


def _parser_of(module: str, monkeypatch) -> argparse.ArgumentParser:
    """The module's parser, without any of its required arguments: caught at the first parse."""
    mod = importlib.import_module(module)

    def stop(self, args=None, namespace=None):
        raise _Parsed(self, None)

    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", stop)
        try:
            mod.main([])
        except _Parsed as done:
            return done.parser
    raise AssertionError(f"{module}.main did not parse its arguments with argparse")


COMMANDS = documented()


def test_the_docs_give_commands_to_check():
    files = {f for f, _, _ in COMMANDS}
    assert "README.md" in files and len(COMMANDS) > 20, files


@pytest.mark.parametrize("where, argv, strict", COMMANDS,
                         ids=[f"{f}:{' '.join(a)[:60]}" for f, a, _ in COMMANDS])
def test_documented_command_is_accepted(where, argv, strict, monkeypatch):
    try:
        check(argv, strict, monkeypatch)
    except SystemExit as exc:
        pytest.fail(f"{where}: `{' '.join(argv)}` is refused by the command line (exit {exc.code})")


def test_every_documented_benchmark_is_registered_and_reached_through_the_cli(monkeypatch, capsys):
    named = {a[2] for _, a, _ in COMMANDS if a[1:2] == ["bench"] and len(a) > 2}
    named |= {a[2].split(".")[2] for _, a, _ in COMMANDS if a[:2] == ["python", "-m"] and a[2].startswith("rtdecode.bench.")}
    named = {n for n in named if not n.startswith("-") and not PLACEHOLDER.fullmatch(n)}
    assert {"hostile", "e2e"} <= named, named
    assert named <= set(BENCHES), f"documented but not in BENCHES: {sorted(named - set(BENCHES))}"
    from rtdecode.cli import main

    for name in sorted(named):
        with pytest.raises(SystemExit) as done:
            main(["bench", name, "--help"])  # the benchmark's own parser answers
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith("usage:") and f"rtdecode.bench.{name}" in out.replace(" bench ", ".bench."), out[:200]


def test_the_research_benchmarks_the_docs_name_are_scripts_that_answer(monkeypatch, capsys):
    scripts = {a[1] for _, a, _ in COMMANDS if a[0] == "python" and _is_script(a[1])}
    research = {s for s in scripts if s.startswith("benchmarks/research/") and not PLACEHOLDER.fullmatch(Path(s).stem)}
    assert {"benchmarks/research/residual_table.py", "benchmarks/research/rig.py"} <= research, sorted(scripts)
    for script in sorted(research):
        mod = importlib.import_module(_script_module(script))
        with pytest.raises(SystemExit) as done:
            mod.main(["--help"])
        assert done.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: python {script}")


def test_a_wrong_flag_or_sub_command_is_caught(monkeypatch):
    with pytest.raises(SystemExit):
        check(["rtdecode", "fit", "mouse", "--out", "m", "--no-such-flag"], True, monkeypatch)
    with pytest.raises(AssertionError):
        check(["rtdecode", "fit", "--no-such-flag"], False, monkeypatch)
    with pytest.raises(AssertionError):
        check(["rtdecode", "bench", "no_such_bench"], False, monkeypatch)
    with pytest.raises(SystemExit):
        check(["rtdecode", "bench", "hostile", "fuzz", "--protocol", "nope", "--json", "x.json"], True, monkeypatch)
    with pytest.raises(AssertionError):
        check(["rtdecode", "bench", "extract", "--frames-per-second"], False, monkeypatch)
    with pytest.raises(AssertionError):
        check(["rtdecode", "bench", "residual_table"], False, monkeypatch)  # a research script now
    with pytest.raises(AssertionError):
        check(["python", "benchmarks/research/no_such_bench.py"], True, monkeypatch)
    with pytest.raises(SystemExit):
        check(["python", "benchmarks/research/ridge_rank.py", "--no-such-flag"], True, monkeypatch)
    with pytest.raises(AssertionError):
        check(["python", "benchmarks/research/ridge_rank.py", "--no-such-flag"], False, monkeypatch)
    with pytest.raises(AssertionError):  # a script without main(argv): its --help, in a child process
        check(["python", "benchmarks/experiments/residual_latency.py", "--no-such-flag"], True, monkeypatch)
