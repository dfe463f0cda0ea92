"""The virtual rig: a seeded ground-truth mouse that watches movies, for tests, demos and benchmarks.

`VirtualRig(n_neurons, seed).trial(i, tier, source)` gives one trial (movie, behaviour, rates,
spikes), the same every time for the same seed and index. `write_dataset` writes the Sensorium 2023
layout; `rtdecode.rig.twophoton` renders raw two-photon frames, `rtdecode.rig.ephys` spike times.
"""

from __future__ import annotations

import dataclasses
import json

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtdecode.stimuli import movies
from rtdecode.rig.population import Population, behavior, rf_patch_mask

__all__ = ["VirtualRig", "RigTrial", "rf_patch_mask", "MODALITIES"]

MODALITIES = ("calcium", "spikes")  # what a written dataset's responses are


@dataclass
class RigTrial:
    """movie (T, 36, 64) float32 0-255; behavior (2, T); pupil_center (2, T); rates, spikes and
    responses (T, N): responses are what the dataset records (deconvolved-calcium-like on the
    realistic rig, the spike counts themselves on the easy rig)."""

    index: int
    tier: str
    source: str
    movie: np.ndarray
    behavior: np.ndarray
    pupil_center: np.ndarray
    rates: np.ndarray
    spikes: np.ndarray
    responses: np.ndarray


class VirtualRig:
    """A ground-truth population plus a stimulus schedule of `n_train` + `n_oracle` trials.

    `rig`: a profile of `rtdecode.rig.population.PROFILES`: 'realistic' (default; calibrated to mouse
    V1 two-photon data), 'realistic_v1' (its first calibration) or 'easy' (the original, nearly
    linear rig with spike-count responses)."""

    def __init__(self, n_neurons: int = 1000, seed: int = 0, n_train: int = 20, n_oracle: int = 4,
                 trial_frames: int = 300, rig: str = "realistic"):
        self.seed = seed
        self.rig = rig
        self.trial_frames = trial_frames
        self.population = Population(n_neurons, seed, rig)
        self.schedule = movies.trial_sources(n_train, n_oracle, np.random.default_rng([seed, 1]))

    @property
    def n_neurons(self) -> int:
        return self.population.n

    def trials(self, tier: str) -> list[int]:
        return [i for i, (t, _) in enumerate(self.schedule) if t == tier]

    def trial(self, i: int) -> RigTrial:
        tier, source = self.schedule[i]
        rng = np.random.default_rng([self.seed, 2, i])
        movie = movies.make_movie(source, self.trial_frames, rng)
        beh, centre = behavior(self.trial_frames, rng)
        rates = self.population.respond(movie, beh, rng)
        spikes = self.population.spikes(rates, rng)
        responses = self.population.deconvolved(spikes, rng)
        return RigTrial(i, tier, source, movie, beh, centre, rates, spikes, responses)

    def write_dataset(self, out: str | Path, progress: bool = False, modality: str = "calcium") -> Path:
        """Write every trial in the Sensorium 2023 layout; responses are `RigTrial.responses`
        (`modality` "calcium") or the spike counts per frame of the same draw, what an ephys rig's
        sorted units give (`modality` "spikes"; on the easy rig both are the spike counts).

        Also writes `meta/evaluation_mask.npy` (the true receptive-field patch, which rtdecode uses
        as the evaluation mask when a dataset has one) and `meta/rig/sources.npy` (each trial's
        stimulus source); neither is part of the Sensorium layout, and readers ignore them.
        """
        from tqdm import tqdm

        from rtdecode.offline.dataset import write_meta, write_trial

        if modality not in MODALITIES:
            raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
        root = Path(out)
        for i in tqdm(range(len(self.schedule)), desc="simulate", unit="trial", disable=not progress):
            tr = self.trial(i)
            resp = tr.spikes if modality == "spikes" else tr.responses
            write_trial(root, str(i), tr.movie, resp.T, tr.behavior, tr.pupil_center)
        coords = np.concatenate([self.population.centres * 10, np.zeros((self.n_neurons, 1))], 1)
        write_meta(root, [t for t, _ in self.schedule], self.n_neurons, coords)
        rig = root / "meta" / "rig"
        rig.mkdir(parents=True, exist_ok=True)
        np.save(root / "meta" / "evaluation_mask.npy", rf_patch_mask())
        np.save(rig / "sources.npy", np.array([s for _, s in self.schedule], dtype="<U32"))
        (rig / "profile.txt").write_text(self.rig + "\n")
        (rig / "modality.txt").write_text(modality + "\n")
        # the parameters too: a profile's name outlives a recalibration (realistic -> realistic_v1)
        (rig / "profile.json").write_text(json.dumps(self.profile_params(), indent=1) + "\n")
        return root

    def profile_params(self) -> dict:
        """The population profile's parameters, JSON-ready."""
        return dataclasses.asdict(self.population.profile)
