"""Benchmarks that write JSON (DESIGN 3.5): each compares against a baseline run in the same process."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_info(**extra) -> dict:
    """What a benchmark ran on: Python, CPU model, cores, affinity, load average, NumPy; `extra` added."""
    import numpy as np

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "cpu_count": os.cpu_count(), "numpy": np.__version__,
            "affinity": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None}
    try:
        info["loadavg_start"] = list(os.getloadavg())
    except OSError:
        pass
    info.update(extra)
    return info
