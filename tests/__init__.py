"""rtdecode's tests, one folder per package folder (tests/live tests rtdecode/live, ...). Every folder is a
package so that two folders may each hold a test module of the same plain name (tests/bench/test_cli.py,
tests/decode/test_cli.py). At the top: the tests of top-level modules (test_metrics.py, test_latency.py)
and the project-wide checks (test_layout.py: the import layers; test_docs_commands.py: every command
in the docs; test_rehearsal.py: the README's rehearsal block; test_registries.py: the registries the
command line and the rig file share)."""

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the repository


def readme_block(heading: str) -> str:
    """The one fenced bash block of README.md's section `heading` (e.g. "## Rehearse on the virtual rig")."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert text.count(heading + "\n") == 1, "README.md needs exactly one section headed " + heading
    section = re.split(r"^## ", text.split(heading + "\n", 1)[1], maxsplit=1, flags=re.M)[0]
    blocks = re.findall(r"^```bash\n(.*?)^```$", section, flags=re.S | re.M)
    assert len(blocks) == 1 and section.count("```") == 2, "the section holds exactly one fenced bash block"
    return blocks[0]


def rtdecode_commands(block: str) -> list[list[str]]:
    """The rtdecode commands of a bash block, as argv lists (comments and a trailing & dropped)."""
    out = []
    for line in block.splitlines():
        words = shlex.split(line, comments=True)
        if words and words[-1] == "&":
            words = words[:-1]
        if words and words[0] == "rtdecode":
            out.append(words[1:])
    return out


def run_block(block: str, workdir: Path, timeout: float) -> tuple[int, str]:
    """Run a README bash block verbatim in `workdir` (with a copy of configs/), this Python's rtdecode on
    PATH and the repository on PYTHONPATH. Returns (exit code, stdout + stderr)."""
    shutil.copytree(ROOT / "configs", workdir / "configs")
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.run(["bash", "-c", block], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr
