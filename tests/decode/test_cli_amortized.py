"""The command line drives every decoder: fit --method amortized, reconstruct --method warm."""

import json

import numpy as np

from rtdecode.cli import main


def test_fit_amortized_and_reconstruct_warm_from_the_command_line(small_dataset, tmp_path):
    assert main(["fit", str(small_dataset), "--out", str(tmp_path / "m"), "--method", "amortized",
                 "--neurons-subset", "100", "--encoder-steps", "10", "--inverse-iterations", "2", "--inverse-stride", "16",
                 "--amortized-kind", "ridge_residual", "--inverse-trials", "1", "--synth-movies", "1",
                 "--amortized-steps", "10", "10"]) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["method"] == "amortized" and card["neurons"] == 100
    inverse = card["method_settings"]["amortized"]["inverse"]
    assert inverse["iterations"] == 2 and inverse["stride"] == 16
    assert main(["reconstruct", str(tmp_path / "m"), str(small_dataset), "--out", str(tmp_path / "r"),
                 "--method", "warm", "--iterations", "1"]) == 0
    out = np.load(tmp_path / "r" / "videos" / "8.npy")
    assert out.shape == np.load(small_dataset / "data" / "videos" / "8.npy").shape
    assert json.loads((tmp_path / "r" / "metrics.json").read_text())["trials"] == 2
