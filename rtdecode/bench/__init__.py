"""The benchmarks a user runs on a rig (docs/design.md 3.5), one module each: extract, decode, e2e,
soak, hostile (BENCHES).

Each module runs as `python -m rtdecode.bench.NAME --help` and as `rtdecode bench NAME --help`;
each result JSON carries `machine_info()` under "machine": the git commit (and whether the tree was
dirty), package versions and the machine it ran on. The research benchmarks (decoder variants,
extraction accuracy, training scaling) are scripts in benchmarks/research/ of the repository, not
part of the package; they use these helpers too.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

# name -> one line of help; the module is rtdecode.bench.<name>. Kept here (no imports) so that the
# command line lists them without importing NumPy or torch.
BENCHES = {
    "extract": "the extraction chains, optimised vs NumPy reference, same frames",
    "decode": "batch-1 decoder latency of every available backend vs torch eager",
    "e2e": "end-to-end latency of the live path on the virtual rig (30 Hz and fastest sustainable)",
    "soak": "the live path at 30 Hz for N minutes with recording and triggers (RSS, drops, lost records)",
    "hostile": "hostile senders against a live `rtdecode run`: fuzz, memory, overload, clock_step, sigterm, flood "
               "(survival, rejections, memory)",
}

PACKAGES = ("numpy", "scipy", "numba", "torch", "onnxruntime", "pyzmq", "threadpoolctl", "rtdecode")
RESULTS = Path("benchmarks") / "results"  # default output folder, relative to the working directory


def repo_root() -> Path:
    """The checkout this package runs from (the folder holding `rtdecode/`)."""
    return Path(__file__).resolve().parents[2]


def git_info(root: Path | None = None) -> dict:
    """{"commit", "dirty"} of the checkout at `root`; None values outside a git checkout.
    `dirty`: a tracked file other than the saved results differs from the commit (results are
    tracked and rewritten by the benchmarks themselves)."""
    root = root or repo_root()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":(exclude)benchmarks/results"],
                                capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def package_versions(names=PACKAGES) -> dict:
    """Installed distribution versions (None where not installed); nothing is imported."""
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = None
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def machine_info(**extra) -> dict:
    """What a result came from: git commit and dirty flag, package versions, CPU model, cores,
    affinity, memory, OS, Python and load average at the start; `extra` added (e.g. the GPU)."""
    info = {
        "git": git_info(), "packages": package_versions(),
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": _memory_gib(), "os": platform.platform(), "python": platform.python_version(),
    }
    try:
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    info.update(extra)
    return info


def write_json(path: str | Path, result: dict) -> Path:
    """Write `result` as indented JSON, adding "machine" (machine_info()) if it has none."""
    if "machine" not in result:
        result = {"machine": machine_info(), **result}
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1) + "\n")
    return p


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of benchmark `name`, its module docstring as the description."""
    return argparse.ArgumentParser(prog=f"rtdecode bench {name}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return v


def positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return v


def script_main(main) -> None:
    """`python -m rtdecode.bench.NAME`: log to stderr at INFO, run `main`, exit with its code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(progress=True))
