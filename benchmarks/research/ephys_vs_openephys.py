"""Compare rtdecode's ephys chain with the Open Ephys GUI's own Spike Detector on a real recording.

Reads the GUI's Binary format with numpy only (structure.oebin, continuous.dat int16 * bit_volts,
the Spike Detector's spikes/*/sample_numbers.npy = peak samples), runs the ephys stages (`build_ephys_stages`) in chunks over
the continuous data, merges each stereotrode's two channels, and reports, per stereotrode and
overall, the fraction of the GUI's spikes we find within `tol_ms` and the fraction of ours the GUI
has within `tol_ms`. Two configurations: 'gui_like' (no extra filter, no common reference,
absolute -50 uV threshold: the detector's settings in settings.xml; the recorded continuous data
is already band-passed by the GUI) and 'rtdecode_default' (300-6000 Hz, common average, 4.5 x
robust noise). Crossing times are compared as detected, and after moving each event to the
stereotrode's most negative sample within the next 1 ms ('peak_aligned'), since the GUI stamps
the peak.

    python benchmarks/research/ephys_vs_openephys.py [--out ephys_vs_openephys.json]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from research_common import RESULTS, parser, repo_root, script_main, write_json
from rtdecode.extract.ephys_stages import SampleChain, build_ephys_stages, events

DEFAULT = repo_root() / ".." / "shared" / "data" / "openephys_v0.6.7_binary"


def load(root: Path):
    rec = next(root.glob("Record Node */experiment*/recording*"))
    info = json.loads((rec / "structure.oebin").read_text())
    cont = info["continuous"][0]
    folder = rec / "continuous" / cont["folder_name"]
    C = int(cont["num_channels"])
    raw = np.fromfile(folder / "continuous.dat", dtype="<i2").reshape(-1, C)
    bv = np.array([ch["bit_volts"] for ch in cont["channels"]])
    sn = np.load(folder / "sample_numbers.npy")
    names = [ch["channel_name"] for ch in cont["channels"]]
    groups = []
    for sp in info["spikes"]:
        sfold = rec / "spikes" / sp["folder"]
        chans = [names.index(c["name"]) for c in sp["source_channels"]]
        groups.append({"name": sp["name"], "channels": chans,
                       "peaks": np.load(sfold / "sample_numbers.npy").astype(np.int64)})
    return raw, float(cont["sample_rate"]), bv, int(sn[0]), groups


def run_chain(raw, fs, scale, t0, chunk=1024, **kw):
    ch = SampleChain(build_ephys_stages(raw.shape[1], chunk, scale=scale, in_dtype=raw.dtype, binned=False, **kw))
    ch.warm_up()
    ch.start(fs, t0)
    ts, cs = [], []
    for a in range(0, raw.shape[0], chunk):
        t, c = events(ch.process(raw[a:a + chunk]))
        ts.append(t.copy())
        cs.append(c.copy())
    return np.concatenate(ts), np.concatenate(cs), ch.stages[-1].crossings.refractory


def merge(times, refractory):
    times = np.sort(times)
    keep, last = [], -(2**62)
    for t in times:
        if t - last >= refractory:
            keep.append(t)
            last = t
    return np.array(keep, np.int64)


def align_to_peak(times, uv, t0, chans, win):
    out = times.copy()
    for i, t in enumerate(times):
        a = t - t0
        seg = uv[a:a + win][:, chans].min(axis=1)
        out[i] = t + int(np.argmin(seg))
    return out


def frac_within(a, b, tol):
    """Fraction of a's events that have an event of b within tol samples."""
    if len(a) == 0:
        return float("nan")
    if len(b) == 0:
        return 0.0
    b = np.sort(b)
    i = np.clip(np.searchsorted(b, a), 1, len(b) - 1)
    d = np.minimum(np.abs(a - b[i - 1]), np.abs(a - b[i]))
    return float(np.mean(d <= tol))


def main(argv=None, progress=False) -> int:
    p = parser("ephys_vs_openephys", __doc__)
    p.add_argument("--data", default=str(DEFAULT))
    p.add_argument("--out", default=str(RESULTS / "ephys_vs_openephys.json"), help="JSON file to write (default %(default)s)")
    p.add_argument("--tol-ms", type=float, default=0.5)
    a = p.parse_args(argv)
    raw, fs, bv, t0, groups = load(Path(a.data))
    scale = float(bv[0])
    uv = raw.astype(np.float32) * scale
    tol = int(round(a.tol_ms * 1e-3 * fs))
    T = raw.shape[0]
    configs = {
        "gui_like": dict(band=None, reference=None, threshold_uv=-50.0, refractory_ms=1.0),
        "rtdecode_default": dict(band=(300.0, 6000.0), reference="mean", k=4.5, noise_s=0.5,
                                 refractory_ms=1.0),
    }
    result = {"data": a.data, "fs": fs, "samples": T, "first_sample": t0, "tol_ms": a.tol_ms,
              "configs": {}}
    for name, kw in configs.items():
        ts, cs, refr = run_chain(raw, fs, scale, t0, **kw)
        calib_end = t0 + (int(kw.get("noise_s", 0) * fs) if "k" in kw else 0)
        per, tot = [], {k: [0.0, 0] for k in ("gui_found", "ours_confirmed", "gui_found_peak", "ours_confirmed_peak")}
        for g in groups:
            gui = g["peaks"][(g["peaks"] >= calib_end + 10) & (g["peaks"] < t0 + T - 50)]
            ours = merge(ts[np.isin(cs, g["channels"])], refr)
            ours = ours[ours < t0 + T - 50]
            peaks = align_to_peak(ours, uv, t0, g["channels"], int(1e-3 * fs))
            row = {"name": g["name"], "channels": g["channels"], "gui_spikes": len(gui),
                   "our_events": len(ours),
                   "gui_found": frac_within(gui, ours, tol), "ours_confirmed": frac_within(ours, gui, tol),
                   "gui_found_peak": frac_within(gui, peaks, tol),
                   "ours_confirmed_peak": frac_within(peaks, gui, tol)}
            per.append(row)
            for k in tot:
                n = row["gui_spikes"] if k.startswith("gui") else row["our_events"]
                if n:
                    tot[k][0] += row[k] * n
                    tot[k][1] += n
        result["configs"][name] = {
            "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
            "overall": {k: (v[0] / v[1] if v[1] else float("nan")) for k, v in tot.items()},
            "per_stereotrode": per,
        }
    write_json(a.out, result)
    for name, r in result["configs"].items():
        print(name, json.dumps(r["overall"]))
    return 0


if __name__ == "__main__":
    script_main(main)
