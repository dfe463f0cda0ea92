"""What the research benchmarks share (benchmarks/research/NAME.py, run as `python benchmarks/research/NAME.py`).

The research benchmarks are not part of the installed package: they measure decoder and rig
variants, the accuracy of the extraction and the scaling of the training. `rtdecode bench` keeps
what a user runs on a rig (extract, decode, e2e, soak, hostile). Each script has
`main(argv=None, progress=False)` and writes JSON carrying `machine_info()` under "machine"
(rtdecode.bench: the git commit and dirty flag, package versions, the machine).

Importing this module puts the checkout that holds it first on `sys.path`, so a script measures
(and records the commit of) the rtdecode beside it, installed or not.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]  # the checkout: benchmarks/research/ -> .
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rtdecode.bench import (RESULTS, machine_info, positive_float, positive_int, repo_root,  # noqa: E402,F401
                            write_json)


def command(name: str) -> str:
    """How benchmark `name` is run: `python benchmarks/research/NAME.py`."""
    return f"python benchmarks/research/{name}.py"


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """The argument parser of benchmark `name`, its module docstring as the description."""
    return argparse.ArgumentParser(prog=command(name), description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def progress_saver(path: str | Path, name: str, argv: list[str] | None):
    """`save(result, done=False)` for a long benchmark that saves after each row: writes `result` to
    `path` with the command that made it (`python benchmarks/research/NAME.py ARGS`), the seconds
    since this call, whether it is complete, and the machine."""
    cmd = f"{command(name)} " + " ".join(sys.argv[1:] if argv is None else argv)
    t0 = time.perf_counter()

    def save(result: dict, done: bool = False) -> None:
        write_json(path, {**result, "command": cmd, "seconds": round(time.perf_counter() - t0, 1),
                          "complete": done, "machine": machine_info()})

    return save


def population_args(p: argparse.ArgumentParser, data: str, neurons, models_help: str) -> None:
    """The options of the benchmarks that fit decoders on realistic-rig populations (one dataset per
    seed, of the largest neuron count; residual_table.py writes them): --data, --models, --seeds,
    --neurons, --train-trials, --test-trials."""
    p.add_argument("--data", default=data, help="where the datasets are (or are written)")
    p.add_argument("--models", default=None, help=f"where models and reconstructions go ({models_help})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--neurons", type=positive_int, nargs="+", default=list(neurons))
    p.add_argument("--train-trials", type=positive_int, default=60)
    p.add_argument("--test-trials", type=positive_int, default=10)


def over_seeds(values: dict) -> dict:
    """{seed: score} -> mean, std and min over the seeds, and the seeds."""
    a = [float(v) for v in values.values()]
    mean = sum(a) / len(a)
    return {"mean": mean, "std": (sum((x - mean) ** 2 for x in a) / len(a)) ** 0.5, "min": min(a),
            "seeds": sorted(values)}


def paired_gain(values: dict, base: dict) -> dict | None:
    """{seed: score} minus {seed: baseline score}, paired by seed: mean, min, max and per seed
    (None when no seed has both)."""
    g = [float(values[k] - base[k]) for k in values if k in base]
    if not g:
        return None
    return {"mean": sum(g) / len(g), "min": min(g), "max": max(g), "per_seed": [round(x, 4) for x in g]}


def script_main(main) -> None:
    """`python benchmarks/research/NAME.py`: log to stderr at INFO, run `main`, exit with its code."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main(progress=True))
