"""Raw outputs of the virtual rig beside a dataset: two-photon TIFFs and ephys spike times."""

from __future__ import annotations

from pathlib import Path

from rtdecode.rig import VirtualRig, ephys
from rtdecode.stimuli.movies import FPS


def write_extras(rig: VirtualRig, root: Path, two_photon_trials: int, with_ephys: bool, progress: bool = False) -> None:
    """`root/twophoton/`: trial_{i}.tif (T, 512, 512) uint16 for the first K trials rendered
    continuously, suite2p ROIs in `rois/`, ground truth in `truth/`. `root/ephys/`: every trial's
    spikes (Kilosort/phy layout)."""
    import tifffile
    from tqdm import tqdm

    from rtdecode.rig.twophoton import Microscope

    if two_photon_trials:
        folder = root / "twophoton"
        folder.mkdir(parents=True, exist_ok=True)
        scope = Microscope(rig.n_neurons, seed=rig.seed, fps=FPS)
        scope.save_rois(folder / "rois")
        for i in tqdm(range(min(two_photon_trials, len(rig.schedule))), desc="two-photon", unit="trial",
                      disable=not progress):
            tr = rig.trial(i)
            tifffile.imwrite(folder / f"trial_{i}.tif", scope.render_movie(tr.spikes), photometric="minisblack")
        scope.save_truth(folder / "truth")
    if with_ephys:
        ephys.write(root / "ephys", [rig.trial(i).spikes for i in range(len(rig.schedule))], FPS, rig.seed)
