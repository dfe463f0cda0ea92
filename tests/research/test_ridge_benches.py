"""The ridge benchmarks' shared parts (benchmarks/research/ridge_compress.py, ridge_brightness.py,
research_common.py): fit then score, the brightness statistics, the saver."""

import json

import numpy as np


def test_fit_and_score_is_fit_then_reconstruct(tiny_dataset, tmp_path):
    from ridge_brightness import brightness_stats
    from ridge_compress import fit_and_score

    row, training = fit_and_score(tiny_dataset, tmp_path / "m", tmp_path / "r", None, brightness_keep=(1.0,))
    metrics = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert row["pixel_corr"] == metrics["pixel_corr"] and row["trials"] == metrics["trials"]
    assert row["alpha"] == training["alpha"] and training["brightness_keep"] == 1.0
    st = brightness_stats(tmp_path / "r", tiny_dataset)
    assert -1 <= st["brightness_corr"] <= 1 and st["brightness_std_ratio"] > 0
    # all brightness removed: the decoded frames' brightness is constant, so it follows nothing
    fit_and_score(tiny_dataset, tmp_path / "m0", tmp_path / "r0", None, brightness_keep=(0.0,))
    videos = [np.load(f) for f in (tmp_path / "r0" / "videos").glob("*.npy")]
    means = np.concatenate([np.nanmean(v, (0, 1)) for v in videos])
    means = means[np.isfinite(means)]
    assert np.ptp(means) < 1e-3 * max(1.0, abs(means).max())


def test_progress_saver_writes_the_command_and_completion(tmp_path):
    from research_common import progress_saver

    save = progress_saver(tmp_path / "x.json", "ridge_brightness", ["--seeds", "0"])
    save({"rows": [1]})
    d = json.loads((tmp_path / "x.json").read_text())
    assert d["command"] == "python benchmarks/research/ridge_brightness.py --seeds 0" and d["complete"] is False
    save({"rows": [1, 2]}, done=True)
    d = json.loads((tmp_path / "x.json").read_text())
    assert d["rows"] == [1, 2] and d["complete"] is True and "machine" in d


def test_seed_statistics_and_paired_gains():
    from research_common import over_seeds, paired_gain
    from ridge_brightness import summarise

    st = over_seeds({2: 0.5, 0: 0.3, 1: 0.4})
    assert st["seeds"] == [0, 1, 2] and np.isclose(st["mean"], 0.4) and st["min"] == 0.3
    assert np.isclose(st["std"], np.std([0.3, 0.4, 0.5]))
    g = paired_gain({0: 0.5, 1: 0.4, 2: 0.9}, {0: 0.3, 1: 0.45})  # seed 2 has no baseline: left out
    assert np.isclose(g["mean"], 0.075) and np.isclose(g["min"], -0.05) and g["per_seed"] == [0.2, -0.05]
    assert paired_gain({0: 0.5}, {1: 0.4}) is None
    rows = [{"neurons": 10, "seed": s, "variant": v, "pixel_corr": p}
            for s, v, p in [(0, "chosen", 0.5), (0, "keep_all", 0.4), (1, "chosen", 0.3), (1, "keep_all", 0.35)]]
    out = summarise(rows)["10"]
    assert np.isclose(out["gain"]["mean"], 0.025) and out["gain"]["per_seed"] == [0.1, -0.05]
