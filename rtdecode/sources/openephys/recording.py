"""Reader of an Open Ephys Binary recording folder (GUI >= 0.6), as the GUI writes it.

Layout (one recording; folder names may contain spaces, e.g. `Record Node 105`):

  structure.oebin                                  JSON: continuous / events / spikes entries
  continuous/<folder_name>/continuous.dat          int16, samples x channels interleaved
  continuous/<folder_name>/sample_numbers.npy      int64 absolute sample numbers
  events/<folder_name>/{sample_numbers,states,full_words}.npy   TTL; states = +/-(line+1)
  spikes/<folder>/{waveforms (n x ch x s int16), sample_numbers (peak), clusters,
                   electrode_indices}.npy

`find_recordings(path)` accepts the top folder, a Record Node folder or a recording folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtdecode.errors import DatasetError


@dataclass
class Continuous:
    stream: str
    source_node: int
    sample_rate: float
    channel_names: list[str]
    bit_volts: np.ndarray  # float64 per channel
    data: np.ndarray  # int16 memmap, samples x channels
    sample_numbers: np.ndarray  # int64 per sample

    def microvolts(self, channels=None) -> np.ndarray:
        """channels x samples float32, exactly as the GUI computes it (int16 * bit_volts, in float32)."""
        idx = np.arange(self.data.shape[1]) if channels is None else np.asarray(channels)
        return (self.data[:, idx].T.astype(np.float32) * self.bit_volts[idx, None].astype(np.float32))


@dataclass
class TtlStream:
    stream: str
    source_node: int
    channel_name: str
    sample_rate: float
    sample_numbers: np.ndarray
    lines: np.ndarray  # 0-based
    states: np.ndarray  # 1 on, 0 off
    words: np.ndarray


@dataclass
class SpikeStream:
    stream: str
    source_node: int
    electrode: str
    sample_rate: float
    pre_peak_samples: int
    bit_volts: np.ndarray  # per channel
    sample_numbers: np.ndarray  # of the peak
    waveforms: np.ndarray  # int16 n x channels x samples
    clusters: np.ndarray

    def waveform_uv(self, i: int) -> np.ndarray:
        return self.waveforms[i].astype(np.float32) * self.bit_volts[:, None].astype(np.float32)


@dataclass
class Recording:
    path: Path
    continuous: list[Continuous]
    ttl: list[TtlStream]
    spikes: list[SpikeStream]


def _node_id(folder: str, fallback: int = -1) -> int:
    m = re.search(r"-(\d+)\.", folder)
    return int(m.group(1)) if m else fallback


def find_recordings(path) -> list[Path]:
    path = Path(path)
    if (path / "structure.oebin").is_file():
        return [path]
    found = sorted(p.parent for p in path.rglob("structure.oebin"))
    if not found:
        raise DatasetError(f"no structure.oebin under {path}: not an Open Ephys Binary recording folder")
    return found


def load_recording(path) -> Recording:
    """Open the (first) recording under `path`; arrays are memory-mapped or small."""
    rec = find_recordings(path)[0]
    try:
        meta = json.loads((rec / "structure.oebin").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{rec / 'structure.oebin'} unreadable: {exc}") from None
    conts = []
    for c in meta.get("continuous", []):
        folder = rec / "continuous" / c["folder_name"]
        chans = c["channels"]
        n_ch = int(c["num_channels"])
        dat = folder / "continuous.dat"
        if not dat.is_file():
            raise DatasetError(f"{dat} is missing")
        data = np.memmap(dat, dtype="<i2", mode="r")
        if data.size % n_ch:
            raise DatasetError(f"{dat}: {data.size} int16 values do not divide into {n_ch} channels")
        data = data.reshape(-1, n_ch)
        sn = np.load(folder / "sample_numbers.npy")
        if sn.shape[0] != data.shape[0]:
            raise DatasetError(f"{folder}: {sn.shape[0]} sample numbers for {data.shape[0]} samples")
        conts.append(Continuous(c.get("stream_name", c["folder_name"].strip("/")),
                                int(c.get("source_processor_id", -1)), float(c["sample_rate"]),
                                [ch["channel_name"] for ch in chans],
                                np.array([ch["bit_volts"] for ch in chans], np.float64), data, sn))
    ttls = []
    for e in meta.get("events", []):
        if e.get("type") == "string":
            continue  # MessageCenter text
        folder = rec / "events" / e["folder_name"]
        if not (folder / "states.npy").is_file():
            continue
        states = np.load(folder / "states.npy").astype(np.int64)
        words = np.load(folder / "full_words.npy") if (folder / "full_words.npy").is_file() \
            else np.zeros(states.size, np.uint64)
        ttls.append(TtlStream(e.get("stream_name", ""), _node_id(e["folder_name"]), e.get("channel_name", ""),
                              float(e.get("sample_rate", 0.0)), np.load(folder / "sample_numbers.npy"),
                              np.abs(states) - 1, (states > 0).astype(np.int64), words.astype(np.uint64)))
    spikes = []
    for s in meta.get("spikes", []):
        folder = rec / "spikes" / s["folder"]
        wf = np.load(folder / "waveforms.npy", mmap_mode="r")
        spikes.append(SpikeStream(s.get("stream_name", ""), int(s.get("source_processor_id", -1)), s["name"],
                                  float(s["sample_rate"]), int(s.get("pre_peak_samples", 0)),
                                  np.array([ch["bit_volts"] for ch in s["source_channels"]], np.float64),
                                  np.load(folder / "sample_numbers.npy"), wf,
                                  np.load(folder / "clusters.npy") if (folder / "clusters.npy").is_file()
                                  else np.zeros(wf.shape[0], np.int64)))
    return Recording(rec, conts, ttls, spikes)
