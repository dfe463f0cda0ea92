"""Virtual ephys: the population's spikes as sorted units on a 384-channel probe.

Written in the layout Kilosort and phy use, so spike-sorting tools read it: `spike_times.npy`
(uint64 samples at 30 kHz), `spike_clusters.npy` (int32 unit per spike), `cluster_channels.npy`
(int32 peak channel per unit), `channel_positions.npy` ((384, 2) um), plus `trial_starts.npy`
(first sample of each trial).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SAMPLE_RATE = 30_000
N_CHANNELS = 384


def spike_times(spikes: np.ndarray, fps: float, rng: np.random.Generator, t0: float = 0.0):
    """(T, N) spike counts per frame -> (times s, units), sorted by time; each spike lands uniformly
    inside its frame."""
    t_idx, units = np.nonzero(spikes)
    counts = spikes[t_idx, units].astype(np.int64)
    t_idx = np.repeat(t_idx, counts)
    units = np.repeat(units, counts)
    times = t0 + (t_idx + rng.uniform(0, 1, t_idx.size)) / fps
    order = np.argsort(times, kind="stable")
    return times[order], units[order].astype(np.int32)


def unit_channels(n_units: int, seed: int) -> np.ndarray:
    """(N,) peak channel of each unit, spread along the probe."""
    return np.random.default_rng([seed, 3]).integers(0, N_CHANNELS, n_units).astype(np.int32)


def channel_positions() -> np.ndarray:
    """(384, 2) x, y in um: Neuropixels 1.0-like checkerboard, 20 um rows."""
    ch = np.arange(N_CHANNELS)
    x = np.array([43, 11, 59, 27])[ch % 4]
    y = 20 * (ch // 2)
    return np.stack([x, y], 1).astype(np.float32)


def write(folder: str | Path, trials_spikes: list[np.ndarray], fps: float, seed: int,
          gap_s: float = 1.0) -> Path:
    """Write every trial's spikes, trials back to back with `gap_s` seconds between them."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 4])
    all_t, all_u, starts, t0 = [], [], [], 0.0
    for spikes in trials_spikes:
        starts.append(round(t0 * SAMPLE_RATE))
        t, u = spike_times(spikes, fps, rng, t0)
        all_t.append(t); all_u.append(u)
        t0 += spikes.shape[0] / fps + gap_s
    times = np.concatenate(all_t) if all_t else np.zeros(0)
    np.save(folder / "spike_times.npy", np.round(times * SAMPLE_RATE).astype(np.uint64))
    np.save(folder / "spike_clusters.npy", np.concatenate(all_u) if all_u else np.zeros(0, np.int32))
    n_units = trials_spikes[0].shape[1] if trials_spikes else 0
    np.save(folder / "cluster_channels.npy", unit_channels(n_units, seed))
    np.save(folder / "channel_positions.npy", channel_positions())
    np.save(folder / "trial_starts.npy", np.array(starts, np.uint64))
    return folder
