"""Training beyond one process: torch DistributedDataParallel, checkpoints and `--resume`.

One process (no `torchrun`) is the default and behaves exactly as before: `current()` is a
single-process `DistEnv` whose collectives do nothing. Under `torchrun --nproc-per-node N -m
rtdecode fit ...` (or `rtdecode fit --nproc N`, which starts torchrun itself) `init()` reads RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/MASTER_PORT and joins the process group: gloo on CPUs, NCCL
on GPUs (one GPU per process, cuda:LOCAL_RANK).

The data-parallel recipe the training loops follow (rtdecode.decode.encoder, .amortized):
  * every rank holds the whole calibration set and draws the *same* global batch from the same
    seeded generator; each takes its contiguous share (`DistEnv.share`), so the effective batch
    is the one-process batch whatever the number of processes;
  * the local loss is weighted by `DistEnv.loss_weight` so that DDP's gradient average equals the
    one-process gradient (a sum over the global batch with the global normaliser);
  * validation runs on rank 0 and its score is broadcast (`DistEnv.main_only`), so every rank
    keeps the same best step; only rank 0 writes outputs.

Checkpoints (`Checkpoints`): every K steps, and at the end of each loop, the model, optimiser,
LR scheduler, the loop's own state and the RNG states of every rank (torch, NumPy's global and
the loop's Generator, Python's `random`) go to `<folder>/<name>.pt`, written atomically (temporary
file, fsync, rename) by rank 0 and loaded with `torch.load(weights_only=True)` (no arbitrary
pickle). With `resume`, a loop restarts from its last checkpoint and, given the same seed, step
count and number of processes, ends where the uninterrupted fit ends (the same operations in the
same order on CPU; tests/decode/test_distributed.py measures it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rtdecode.errors import ConfigError

log = logging.getLogger(__name__)

# Test hook: "NAME:STEP" -> the process SIGKILLs itself right after the checkpoint of loop NAME at
# STEP is on disk (a crash at a known point; tests/decode/test_distributed.py).
KILL_ENV = "RTDECODE_KILL_AFTER_CHECKPOINT"
LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass
class DistEnv:
    """Where this process stands: rank, world size, backend and device. The single-process
    default (`DistEnv()`) makes every collective a no-op."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> slice:
        """This rank's contiguous share of a global batch of `n` items (sizes differ by at most 1)."""
        base, extra = divmod(n, self.world_size)
        lo = self.rank * base + min(self.rank, extra)
        return slice(lo, lo + base + (1 if self.rank < extra else 0))

    def loss_weight(self, n_local: int, n_global: int) -> float:
        """Factor for a loss averaged over this rank's `n_local` items so that DDP's average of
        the gradients over ranks is the gradient of the average over the `n_global` items."""
        return n_local * self.world_size / n_global

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """`model` on this rank's device, in DistributedDataParallel when there are several ranks
        (DDP broadcasts rank 0's parameters and buffers, so every rank starts from the same model)."""
        model.to(self.device)
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(model, device_ids=ids, forward_sync_buffers=False)  # buffers are fixed statistics

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, obj: Any, src: int = 0) -> Any:
        """`obj` of rank `src` on every rank (picklable objects)."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == src else None]
        torch.distributed.broadcast_object_list(box, src=src)
        return box[0]

    def all_gather(self, obj: Any) -> list:
        """[obj of rank 0, obj of rank 1, ...] on every rank."""
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def main_only(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on rank 0 only; every rank gets its result."""
        return self.broadcast(fn() if self.is_main else None)

    def card_fields(self) -> dict:
        """What the model card records about how the fit ran."""
        if self.device.type == "cuda":
            devices = [f"cuda ({torch.cuda.get_device_name(self.device)})"] * self.world_size
        else:
            devices = ["cpu"] * self.world_size
        return {"world_size": self.world_size, "backend": self.backend, "devices": devices}


_ENV: DistEnv | None = None


def launched() -> bool:
    """True in a process started by torchrun (or anything that sets its environment variables)."""
    return all(v in os.environ for v in LAUNCH_VARS)


DEVICES = ("auto", "cpu", "cuda")


def single_device(device: str = "cpu") -> torch.device:
    """The device of a single-process fit: 'cpu', 'cuda' (the current GPU; an error without one)
    or 'auto' (the GPU when torch sees one, else the CPU)."""
    if device not in DEVICES:
        raise ConfigError(f"device '{device}': use one of {', '.join(DEVICES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: this torch sees no CUDA GPU (torch.cuda.is_available() is False); "
                          "use --device cpu, or install a CUDA build of torch on a machine with a GPU")
    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def init(backend: str | None = None, device: str = "cpu") -> DistEnv:
    """Join the process group when launched by torchrun; otherwise the single-process env on
    `device` (see `single_device`). `backend`: 'gloo' or 'nccl' (default: nccl when CUDA is
    available and `device` is not 'cpu', gloo otherwise); under torchrun each rank's device
    follows the backend."""
    global _ENV
    if _ENV is not None:
        return _ENV
    if not launched() or int(os.environ["WORLD_SIZE"]) == 1:
        _ENV = DistEnv(device=single_device(device))
        return _ENV
    import torch.distributed as dist

    if not dist.is_available():
        raise ConfigError("this torch build has no torch.distributed; install a torch with distributed support")
    backend = (backend or os.environ.get("RTDECODE_DIST_BACKEND")
               or ("nccl" if torch.cuda.is_available() and device != "cpu" else "gloo"))
    if backend not in ("gloo", "nccl"):
        raise ConfigError(f"distributed backend '{backend}': use gloo (CPUs) or nccl (GPUs)")
    local = int(os.environ["LOCAL_RANK"])
    if backend == "nccl":
        if not torch.cuda.is_available() or local >= torch.cuda.device_count():
            raise ConfigError(f"backend nccl needs a GPU per process: LOCAL_RANK {local}, "
                              f"{torch.cuda.device_count()} GPU(s) visible; use gloo or fewer processes")
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend)
    _ENV = DistEnv(dist.get_rank(), dist.get_world_size(), local, backend, device)
    log.info("distributed: rank %d of %d (%s, %s)", _ENV.rank, _ENV.world_size, backend, device)
    return _ENV


def current() -> DistEnv:
    """The env `init()` set up, or the single-process one."""
    return _ENV if _ENV is not None else DistEnv()


def launch(nproc: int, argv: list[str]) -> int:
    """Run `python -m rtdecode ARGV` in `nproc` processes under torch.distributed.run (torchrun)
    on this machine, on 127.0.0.1 and a free port; return its exit code."""
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
           "--master-addr", "127.0.0.1", "--master-port", str(port), "-m", "rtdecode", *argv]
    log.info("launching: %s", " ".join(cmd))
    return subprocess.run(cmd).returncode


# -- RNG states ---------------------------------------------------------------------------------

def rng_state(gen: np.random.Generator | None = None) -> dict:
    """This process's RNG states as tensors and plain Python values (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    out = {"torch": torch.get_rng_state(), "python": random.getstate(),
           "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                     "has_gauss": int(has_gauss), "cached": float(cached)}}
    if gen is not None:
        out["generator"] = gen.bit_generator.state
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict, gen: np.random.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    if gen is not None and "generator" in state:
        gen.bit_generator.state = state["generator"]
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples_to_lists(x):
    """random.getstate() round-trips through torch.load(weights_only=True) only as lists."""
    if isinstance(x, tuple):
        return [_tuples_to_lists(v) for v in x]
    return x


def _lists_to_tuples(x):
    if isinstance(x, list):
        return tuple(_lists_to_tuples(v) for v in x)
    return x


# -- checkpoints --------------------------------------------------------------------------------

class Checkpoints:
    """Per-loop checkpoints `<folder>/<name>.pt`. `every` = 0 writes only the final one of each
    loop (what --resume needs to skip a finished stage); None writes nothing."""

    def __init__(self, folder: str | Path, every: int | None = 0, resume: bool = False, env: DistEnv | None = None):
        if every is not None and every < 0:
            raise ConfigError(f"--checkpoint-every must be >= 0, got {every}")
        self.folder = Path(folder)
        self.every = every
        self.resume = resume
        self.env = env or current()
        if resume and not self.folder.is_dir():
            raise ConfigError(f"--resume: no checkpoint folder {self.folder} (fit once with --checkpoint-every K)")

    def path(self, name: str) -> Path:
        return self.folder / f"{name}.pt"

    def due(self, step: int, last: bool) -> bool:
        """Write one after `step` (1-based) steps?"""
        if self.every is None:
            return False
        return last or (self.every > 0 and step % self.every == 0)

    def load(self, name: str, gen: np.random.Generator | None = None, config: dict | None = None) -> dict | None:
        """The checkpoint of loop `name` (with --resume and if one exists), this rank's RNG states
        restored; None otherwise. `config`: the loop's settings, which must equal the saved ones."""
        p = self.path(name)
        if not self.resume or not p.is_file():
            return None
        try:
            ck = torch.load(p, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConfigError(f"{p}: cannot read this checkpoint ({exc}); delete it to restart that stage") from exc
        if config is not None and ck.get("config") != config:
            raise ConfigError(f"{p} was written with {ck.get('config')}, this fit has {config}: resume with the "
                              "same options, or delete the checkpoint folder to start again")
        states = ck.pop("rng")
        if len(states) != self.env.world_size:
            log.warning("%s was written by %d process(es), resuming with %d: the data split changes, so the "
                        "result will differ from an uninterrupted fit", p, len(states), self.env.world_size)
        st = states[min(self.env.rank, len(states) - 1)]
        st["python"] = _lists_to_tuples(st["python"])
        set_rng_state(st, gen)
        log.info("resuming %s from step %s (%s)", name, ck.get("step"), p)
        return ck

    def save(self, name: str, state: dict, gen: np.random.Generator | None = None) -> None:
        """Write `state` (tensors, numbers, strings, lists, dicts) plus every rank's RNG states;
        rank 0 writes; all ranks wait for the file."""
        st = rng_state(gen)
        st["python"] = _tuples_to_lists(st["python"])
        states = self.env.all_gather(st)
        if self.env.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            p = self.path(name)
            tmp = p.with_suffix(".pt.tmp")
            with open(tmp, "wb") as f:
                torch.save({**state, "rng": states, "world_size": self.env.world_size}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, p)
        self.env.barrier()
        if os.environ.get(KILL_ENV) == f"{name}:{state.get('step')}":
            log.warning("%s=%s: killing this process (test hook)", KILL_ENV, os.environ[KILL_ENV])
            os.kill(os.getpid(), signal.SIGKILL)

    def step(self, name: str, step: int, last: bool, state: Callable[[], dict],
             gen: np.random.Generator | None = None) -> None:
        """Save `state()` after `step` steps if one is due."""
        if self.due(step, last):
            self.save(name, {**state(), "step": step}, gen)


def no_checkpoints() -> Checkpoints:
    """Checkpoints that are never written or read (the default of the training functions)."""
    return Checkpoints(".", every=None)


@contextlib.contextmanager
def session(backend: str | None = None, device: str = "cpu"):
    """`with session() as env:` init, and leave the process group at the end (also on errors)."""
    env = init(backend, device)
    try:
        yield env
    finally:
        global _ENV
        if env.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        _ENV = None
