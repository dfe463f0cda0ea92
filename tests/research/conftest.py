"""The research benchmarks (benchmarks/research/NAME.py) are scripts, not a package: their folder goes
on sys.path so that their tests import them as `import NAME`, as the scripts import each other."""

import sys
from pathlib import Path

RESEARCH = Path(__file__).resolve().parents[2] / "benchmarks" / "research"
if str(RESEARCH) not in sys.path:
    sys.path.insert(0, str(RESEARCH))
