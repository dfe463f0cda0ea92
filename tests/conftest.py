"""Shared fixtures: small seeded virtual-rig datasets (written once per test run, shared by the xdist
workers: shared_folder)."""

import os
from pathlib import Path

# One BLAS / OpenMP thread in the test process and the processes it starts, set before NumPy or
# torch load: on a shared 2-core machine their spinning worker threads made fits 20-40x slower.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import contextlib  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rtdecode.rig import VirtualRig  # noqa: E402

try:
    import fcntl  # noqa: E402
except ImportError:  # no flock (Windows): each worker builds its own
    fcntl = None


def shared_folder(tmp_path_factory, name: str, build) -> Path:
    """A folder that `build(folder)` fills once per test run. Under pytest-xdist the workers share it:
    the first to ask builds it while the others wait on a lock, instead of each worker fitting the same
    seeded model again (a session fixture is per worker). Without xdist: a fresh folder, built here."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None or fcntl is None:
        folder = tmp_path_factory.mktemp(name)
        build(folder)
        return folder
    root = tmp_path_factory.getbasetemp().parent / "shared"  # this run's folder, above every worker's
    root.mkdir(exist_ok=True)
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(folder)  # a build that failed in another worker
                folder.mkdir()
                build(folder)
                done.touch()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return folder


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """`-n N` schedules with work stealing: a worker that runs out of tests takes some of another's queue.
    xdist's default (`--dist load`) leaves each worker the tests it was handed, so one worker still holding
    a few tests that wait on sockets for tens of seconds ended the run alone (one worker's tests took 85 s
    longer than the others'). Another --dist given on the command line is kept."""
    if config.getvalue("dist") != "load":
        return None
    try:
        from xdist.scheduler import WorkStealingScheduling  # pytest-xdist >= 3.2
    except ImportError:
        return None
    return WorkStealingScheduling(config, log)


@pytest.fixture(scope="session", autouse=True)
def _numba_kernels(tmp_path_factory):
    """The extraction's numba kernels compiled once, before the tests: from a clean clone (no cache on
    disk yet) every xdist worker, and every process a test starts, compiled all of them at once (8 s
    of CPU each). The first worker compiles them into numba's cache while the others wait on a lock,
    then load them from it (under a second). Without xdist each kernel compiles when first used."""
    from rtdecode.extract.kernels import warm_up_kernels

    if os.environ.get("PYTEST_XDIST_WORKER") is None or fcntl is None:
        return  # one process: each kernel compiles when first used, as before
    with open(tmp_path_factory.getbasetemp().parent / "numba.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            warm_up_kernels()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture(scope="session")
def small_rig():
    return VirtualRig(n_neurons=300, seed=3, n_train=8, n_oracle=2, trial_frames=150)


@pytest.fixture(scope="session")
def small_dataset(small_rig, tmp_path_factory):
    return shared_folder(tmp_path_factory, "mouse", small_rig.write_dataset)


@pytest.fixture(scope="session")
def tiny_rig():
    # for tests/decode and tests/research. The easy rig: at this size (6 short trials) the realistic rig
    # leaves a 120-step encoder nothing to learn
    return VirtualRig(n_neurons=200, seed=5, n_train=6, n_oracle=2, trial_frames=120, rig="easy")


@pytest.fixture(scope="session")
def tiny_dataset(tiny_rig, tmp_path_factory):
    return shared_folder(tmp_path_factory, "tiny_mouse", tiny_rig.write_dataset)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
