"""Fitting under torch DistributedDataParallel (rtdecode.decode.distributed): a 2-process gloo
fit matches a 1-process fit with the same effective batch, and a fit killed (SIGKILL) after a
checkpoint and resumed matches an uninterrupted one.

Tolerances, measured on the tiny virtual dataset (200 neurons, 5 train trials of 120 frames):
  * 2 processes vs 1: encoder weights differ by at most 2.4e-7 after 8 AdamW steps (the gradient
    sums are ordered differently); the test allows 1e-5. The inverse's targets, computed through
    those encoders, by 1.5e-5 (0-255 scale); allowed 1e-3. The amortized network of the fit is not
    compared: its dropout masks come from per-rank streams (statistically, not bitwise, the same);
    without dropout its loop matches to 2.3e-6 (slow test, allowed 1e-4).
  * killed and resumed vs uninterrupted: identical (max difference 0.0), with one process and with
    two (slow test); allowed 1e-6.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtdecode.decode import distributed as dist
from rtdecode.decode.card import read_card
from rtdecode.decode.residual import ResidualConfig
from tests import ROOT
from tests.conftest import shared_folder

# the dense residual kind: the one that trains under torchrun, with checkpoints and inverse targets
ARGS = ["--method", "amortized", "--amortized-kind", "ridge_residual", "--encoder-steps", "8", "--inverse-trials", "2", "--inverse-iterations", "2",
        "--synth-movies", "0", "--amortized-steps", "4", "4"]
OPTIONS = dict(encoder_steps=8, inverse_trials=2, synth_movies=0, amortized_steps=(4, 4), amortized_cfg=ResidualConfig())


def _run(args, env_extra=None, timeout=300):
    # CPU unless a test asks for GPUs: these fits are compared with the in-process CPU reference
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": "",
           **(env_extra or {})}
    for v in dist.LAUNCH_VARS:  # never inherit a launcher's variables
        env.pop(v, None)
    return subprocess.run([sys.executable, "-m", "rtdecode", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _weights(folder):
    with np.load(Path(folder) / "weights.npz", allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _targets(folder):
    return torch.load(Path(folder) / "checkpoints" / "inverse_targets.pt", weights_only=True)["targets"]


@pytest.fixture(scope="module")
def reference(tiny_dataset, tmp_path_factory):
    """One process, uninterrupted, checkpoints every 3 steps (in this process; once per run, shared by
    the xdist workers that run this module's tests)."""
    from rtdecode.decode.inverse import InverseConfig
    from rtdecode.offline.fit import fit_dataset

    def fit(folder):
        fit_dataset(tiny_dataset, folder / "model", method="amortized", progress=False,
                    inverse_cfg=InverseConfig(iterations=2), checkpoint_every=3, **OPTIONS)

    return shared_folder(tmp_path_factory, "ddp_ref", fit) / "model"


def test_two_gloo_processes_match_one(reference, tiny_dataset, tmp_path):
    out = tmp_path / "model"
    r = _run(["fit", str(tiny_dataset), "--out", str(out), *ARGS, "--checkpoint-every", "0", "--nproc", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    card = read_card(out)
    assert card.distributed == {"world_size": 2, "backend": "gloo", "devices": ["cpu", "cpu"]}
    assert read_card(reference).distributed == {"world_size": 1, "backend": None, "devices": ["cpu"]}
    one, two = _weights(reference), _weights(out)
    assert sorted(one) == sorted(two)
    enc = [k for k in one if k.startswith("encoder0.")]
    diff = max(float(np.abs(one[k] - two[k]).max()) for k in enc)
    assert diff < 1e-5, f"encoder weights, 2 processes vs 1: max difference {diff}"
    assert any(float(np.abs(one[k]).max()) > 0.1 for k in enc)  # real weights, not zeros
    tdiff = max(float((a - b).abs().max()) for a, b in zip(_targets(reference), _targets(out)))
    assert len(_targets(out)) == 2 and tdiff < 1e-3, f"inverse targets, 2 processes vs 1: {tdiff}"
    # the amortized network trained under DDP and decodes
    from rtdecode import decode

    dec = decode.load(out)[1]
    resp = np.load(tiny_dataset / "data" / "responses" / f"{sorted(os.listdir(tiny_dataset / 'data' / 'responses'))[0]}")
    rec = dec.predict_trial(np.nan_to_num(resp))
    assert np.isfinite(rec).all() and rec.std() > 0


def test_a_killed_fit_resumes_to_the_uninterrupted_result(reference, tiny_dataset, tmp_path):
    from rtdecode.decode.inverse import InverseConfig
    from rtdecode.offline.fit import fit_dataset

    out = tmp_path / "model"
    r = _run(["fit", str(tiny_dataset), "--out", str(out), *ARGS, "--checkpoint-every", "3"],
             {dist.KILL_ENV: "amortized:3"})
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert not (out / "weights.npz").exists()  # it really died before the end
    assert {p.name for p in (out / "checkpoints").iterdir()} == {"encoder0.pt", "inverse_targets.pt", "amortized.pt"}
    fit_dataset(tiny_dataset, out, method="amortized", progress=False, inverse_cfg=InverseConfig(iterations=2),
                checkpoint_every=3, resume=True, **OPTIONS)
    one, resumed = _weights(reference), _weights(out)
    diff = max(float(np.abs(one[k] - resumed[k]).max()) for k in one)
    assert diff < 1e-6, f"resumed vs uninterrupted: max difference {diff}"
    from rtdecode.errors import ConfigError

    with pytest.raises(ConfigError, match="same options"):  # a checkpoint of another fit is refused
        fit_dataset(tiny_dataset, out, method="amortized", progress=False, inverse_cfg=InverseConfig(iterations=2),
                    checkpoint_every=3, resume=True, **{**OPTIONS, "encoder_steps": 9})


AMORTIZED_SCRIPT = """
import sys, numpy as np, torch
torch.set_num_threads(1)
from rtdecode.decode import amortized as am, distributed as dist

def build():
    torch.manual_seed(0)  # torch's start-up seed differs per process
    g = np.random.default_rng(1)
    net = am.AmortizedNet(30, 4, (36, 64), am.AmortizedConfig(k=2, hidden=32, dropout=0.0))
    pairs = am.PairSet(0, 4)
    for _ in range(3):
        pairs.add(g.poisson(1.0, (30, 50)).astype(np.float32), g.uniform(0, 255, (50, 36, 64)).astype(np.float32))
    return net, [("a", pairs, 3), ("b", pairs, 3)]

with dist.session() as env:
    net, phases = build()
    am.train_amortized(net, phases, batch=8, seed=0)
    if env.is_main:
        torch.save(net.state_dict(), sys.argv[1])
"""


@pytest.mark.slow  # ~18 s on the loaded 2-core machine
def test_amortized_training_in_two_processes_matches_one_without_dropout(tmp_path):
    """The amortized loop's batch shares and loss weights (dropout 0, so the runs are comparable):
    2.3e-6 measured after 6 steps, allowed 1e-4 (a wrong share or weight gives ~0.1-0.6)."""
    script = tmp_path / "am.py"
    script.write_text(AMORTIZED_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for v in dist.LAUNCH_VARS:
        env.pop(v, None)
    one = subprocess.run([sys.executable, str(script), str(tmp_path / "one.pt")], env=env, capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr",
                          "127.0.0.1", "--master-port", str(port), str(script), str(tmp_path / "two.pt")],
                         env=env, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    a = torch.load(tmp_path / "one.pt", weights_only=True)
    b = torch.load(tmp_path / "two.pt", weights_only=True)
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    moved = float((a["fc1.weight"] - am_init_fc1()).abs().max())
    assert moved > 1e-4  # it trained
    assert diff < 1e-4, f"amortized weights, 2 processes vs 1: max difference {diff}"


def am_init_fc1():
    from rtdecode.decode import amortized as am

    torch.manual_seed(0)
    return am.AmortizedNet(30, 4, (36, 64), am.AmortizedConfig(k=2, hidden=32, dropout=0.0)).fc1.weight.detach()


@pytest.mark.slow  # ~60 s on the loaded 2-core machine
def test_a_killed_two_process_fit_resumes_to_the_uninterrupted_result(tiny_dataset, tmp_path):
    """DDP: torchrun stops both ranks when one is killed; every rank's RNG states come back."""
    args = [*ARGS, "--checkpoint-every", "3", "--nproc", "2"]
    r = _run(["fit", str(tiny_dataset), "--out", str(tmp_path / "whole"), *args])
    assert r.returncode == 0, r.stderr[-3000:]
    r = _run(["fit", str(tiny_dataset), "--out", str(tmp_path / "cut"), *args], {dist.KILL_ENV: "encoder0:6"})
    assert r.returncode != 0 and not (tmp_path / "cut" / "weights.npz").exists()
    r = _run(["fit", str(tiny_dataset), "--out", str(tmp_path / "cut"), *args, "--resume"])
    assert r.returncode == 0, r.stderr[-3000:]
    one, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    diff = max(float(np.abs(one[k] - resumed[k]).max()) for k in one)
    assert diff < 1e-6, f"2 processes, resumed vs uninterrupted: max difference {diff}"  # measured 0.0


@pytest.mark.slow  # ~25 s on the loaded 2-core machine; the default run has the DDP and resume tests
def test_an_ensemble_is_spread_over_ranks_and_equals_the_one_process_ensemble(tiny_dataset, tmp_path):
    """Two members on two ranks: each trained alone on its rank, so bitwise the one-process members."""
    from rtdecode.offline.fit import fit_dataset

    fit_dataset(tiny_dataset, tmp_path / "one", method="inverse", progress=False, encoder_steps=4, encoder_models=2)
    r = _run(["fit", str(tiny_dataset), "--out", str(tmp_path / "two"), "--method", "inverse", "--encoder-steps", "4",
              "--encoder-models", "2", "--nproc", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    one, two = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    assert sorted(one) == sorted(two) and any(k.startswith("encoder1.") for k in two)
    assert all(np.array_equal(one[k], two[k]) for k in one)
    ranks = [e["rank"] for e in read_card(tmp_path / "two").training["encoder"]]
    assert ranks == [0, 1]


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="NCCL data parallelism needs 2 CUDA GPUs")
def test_two_nccl_processes_match_one(reference, tiny_dataset, tmp_path):
    """The NCCL path (one GPU per process); written for a GPU machine, not run on the CPU-only ones."""
    out = tmp_path / "model"
    r = _run(["fit", str(tiny_dataset), "--out", str(out), *ARGS, "--nproc", "2"], {"CUDA_VISIBLE_DEVICES": "0,1"})
    assert r.returncode == 0, r.stderr[-3000:]
    card = read_card(out)
    assert card.distributed["backend"] == "nccl" and card.distributed["devices"][0].startswith("cuda")
    one, two = _weights(reference), _weights(out)
    diff = max(float(np.abs(one[k] - two[k]).max()) for k in one if k.startswith("encoder0."))
    assert diff < 1e-3, f"encoder weights, 2 GPUs vs 1 CPU process: {diff}"  # cuDNN / TF32 arithmetic


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_gpu_fit_matches_the_cpu_fit(reference, tiny_dataset, tmp_path):
    """`fit --device cuda` in one process trains encoder and amortized network on the GPU."""
    out = tmp_path / "model"
    r = _run(["fit", str(tiny_dataset), "--out", str(out), *ARGS, "--device", "cuda"], {"CUDA_VISIBLE_DEVICES": "0"})
    assert r.returncode == 0, r.stderr[-3000:]
    card = read_card(out)
    assert card.distributed["world_size"] == 1 and card.distributed["devices"][0].startswith("cuda")
    one, gpu = _weights(reference), _weights(out)
    assert sorted(one) == sorted(gpu)
    diff = max(float(np.abs(one[k] - gpu[k]).max()) for k in one if k.startswith("encoder0."))
    assert diff < 1e-3, f"encoder weights, GPU vs CPU: {diff}"  # cuDNN / TF32 arithmetic


def test_device_choice_and_its_errors(monkeypatch):
    from rtdecode.errors import ConfigError

    with pytest.raises(ConfigError, match="auto, cpu, cuda"):
        dist.single_device("gpu")
    assert dist.single_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dist.single_device("auto") == torch.device("cpu")
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        dist.single_device("cuda")
    r = _run(["fit", "no-such-dataset", "--out", "m", "--method", "amortized", "--device", "cuda"])
    assert r.returncode != 0 and "sees no CUDA GPU" in r.stderr and "Traceback" not in r.stderr


def test_resume_without_checkpoints_says_what_to_do(tiny_dataset, tmp_path):
    from rtdecode.errors import ConfigError
    from rtdecode.offline.fit import fit_dataset

    with pytest.raises(ConfigError, match="checkpoint-every"):
        fit_dataset(tiny_dataset, tmp_path / "m", method="inverse", progress=False, resume=True, encoder_steps=2)
    with pytest.raises(ConfigError, match="torchrun"):
        fit_dataset(tiny_dataset, tmp_path / "m", method="ridge", progress=False, checkpoint_every=5)


@pytest.mark.parametrize("n, world", [(64, 2), (6, 4), (5, 2), (3, 1)])
def test_rank_shares_cover_the_global_batch_and_weights_average_to_one(n, world):
    envs = [dist.DistEnv(rank=r, world_size=world) for r in range(world)]
    shares = [e.share(n) for e in envs]
    assert [i for s in shares for i in range(n)[s]] == list(range(n))
    # DDP averages gradients over ranks: the weights make that the global mean
    assert sum(e.loss_weight(s.stop - s.start, n) for e, s in zip(envs, shares)) / world == pytest.approx(1.0)


def test_single_process_env_and_nproc_argv():
    from rtdecode.cli import _without_nproc

    env = dist.current()
    assert not env.distributed and env.all_gather(3) == [3] and env.broadcast("x") == "x"
    assert env.card_fields() == {"world_size": 1, "backend": None, "devices": ["cpu"]}
    assert _without_nproc(["fit", "d", "--nproc", "2", "--out", "m", "--nproc=3"]) == ["fit", "d", "--out", "m"]
