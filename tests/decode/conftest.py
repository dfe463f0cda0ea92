"""Tiny virtual-rig data for the decoder tests (seconds, not minutes); tiny_rig and tiny_dataset are in
tests/conftest.py (the research benchmarks' tests use them too)."""

import pytest
import torch

from tests.conftest import shared_folder


@pytest.fixture(scope="session", autouse=True)
def _threads():
    # One intra-op thread: on a loaded 2-core machine two spinning OpenMP threads made these
    # fixtures 20-40x slower (tiny_encoder 243 s instead of 6 s, pytest --durations), one thread
    # costs little on a quiet one.
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_trials(tiny_rig):
    from rtdecode.decode.encoder import behaviour_matrix

    out = []
    for i in range(len(tiny_rig.schedule)):
        t = tiny_rig.trial(i)
        out.append((t.spikes.T.copy(), t.movie, behaviour_matrix(t.behavior, t.pupil_center), t.rates.T.copy()))
    return out


@pytest.fixture(scope="session")
def tiny_encoder(tiny_trials, tmp_path_factory):
    from rtdecode.decode import encoder as E

    tr = E.TrialData([t[1] for t in tiny_trials[:5]], [t[2] for t in tiny_trials[:5]], [t[0] for t in tiny_trials[:5]])
    va = E.TrialData([t[1] for t in tiny_trials[5:6]], [t[2] for t in tiny_trials[5:6]], [t[0] for t in tiny_trials[5:6]])

    def train(folder):  # trained once per run (the xdist workers share it: shared_folder)
        model, info = E.train_encoder(tr, va, steps=120, batch=4, eval_every=60, seed=0)
        torch.save({"model": model, "info": info}, folder / "encoder.pt")

    saved = torch.load(shared_folder(tmp_path_factory, "tiny_encoder", train) / "encoder.pt", weights_only=False)
    return saved["model"], saved["info"], tr, va


# the default amortized kind (image prior): 40 U-Net steps; the encoder for reconstruct --method warm|inverse
TINY_OPTIONS = dict(encoder_steps=40, amortized_steps=(0, 40))


@pytest.fixture(scope="session")
def tiny_model(tiny_dataset, tmp_path_factory):
    from rtdecode.decode.card import read_card
    from rtdecode.decode.inverse import InverseConfig
    from rtdecode.offline.fit import fit_dataset

    def fit(folder):  # fitted once per run (the xdist workers share it: shared_folder)
        fit_dataset(tiny_dataset, folder / "model", method="amortized", progress=False,
                    inverse_cfg=InverseConfig(iterations=5), **TINY_OPTIONS)

    out = shared_folder(tmp_path_factory, "tiny_model", fit) / "model"
    return out, read_card(out)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model):
    from rtdecode import decode

    return decode.load(tiny_model[0])[1]
