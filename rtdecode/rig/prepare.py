"""The files a rig file needs for the virtual two-photon rig: the microscope's ROIs (suite2p layout) and
a decoder fitted on a calibration block that went through the live extraction chain.

`write_rig_files(rois_dir, model_dir, ...)` writes `rois_dir/{stat,iscell,ops}.npy` and
`rois_dir/rig.json` (the virtual rig's parameters), and, with `model_dir`, fits a ridge decoder on
`n_train` calibration movies rendered by the same virtual microscope and extracted by the live chain
(as `rtdecode demo` does), saved as a model directory. Files already written for the same parameters
are kept (the fit takes a minute or more).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from rtdecode import decode
from rtdecode.decode import model as model_dir_io
from rtdecode.decode import ridge
from rtdecode.extract import build_chain
from rtdecode.extract.register import reference_from
from rtdecode.extract.rois import load_suite2p
from rtdecode.rig import VirtualRig
from rtdecode.rig.twophoton import Microscope
from rtdecode.stimuli.movies import FPS

log = logging.getLogger(__name__)


def calibrate(rig: VirtualRig, scope: Microscope, rois_dir: Path, progress: bool, n_reference: int = 50):
    """Write the ROIs to `rois_dir` and run the calibration block (the rig's `train` trials) through the
    live extraction chain. Returns (extraction chain, per-trial (activity (N, T), movie (T, 36, 64)))."""
    from tqdm import tqdm

    scope.save_rois(rois_dir)
    rois = load_suite2p(rois_dir)
    train = rig.trials("train")
    first = rig.trial(train[0])
    head = [scope.render(first.spikes[k]) for k in range(n_reference)]
    chain = build_chain(None, rois, reference_from(np.stack(head)), fps=FPS)
    chain.warm_up()
    data = []
    bar = tqdm(total=len(train) * rig.trial_frames, desc="calibration block", unit="frame", disable=not progress)
    for i in train:
        tr = first if i == train[0] else rig.trial(i)
        act = np.empty((rig.n_neurons, tr.movie.shape[0]), np.float32)
        for k in range(tr.movie.shape[0]):
            img = head[k] if (i == train[0] and k < n_reference) else scope.render(tr.spikes[k])
            act[:, k] = chain.process(img)
            bar.update()
        data.append((act, tr.movie))
    bar.close()
    return chain, data


def fit_calibration(calib: list, n_neurons: int, source: str) -> tuple[dict, object]:
    """Ridge decoder on the calibration block (the last fifth chooses the penalty): (card, decoder)."""
    nv = max(1, len(calib) // 5)
    dec, info = ridge.fit(lambda: calib[:-nv], lambda: calib[-nv:])
    card = model_dir_io.new_card("ridge", n_neurons, dec.lag_min, dec.basis.shape[0], dec.frame_shape, FPS,
                                 training={"source": source, "trials": len(calib), **info})
    return card, dec


def write_rig_files(rois_dir: str | Path, model_dir: str | Path | None = None, n_neurons: int = 1000,
                    seed: int = 0, n_train: int = 12, frame_shape: tuple[int, int] = (512, 512),
                    progress: bool = True, force: bool = False, rig: str = "realistic") -> dict:
    """Write the ROIs (and the model). Returns what was written or kept. `rig`: the population profile
    (rtdecode.rig.population.PROFILES) the calibration block is simulated with."""
    rois_dir = Path(rois_dir)
    params = {"neurons": int(n_neurons), "seed": int(seed), "frame_shape": [int(v) for v in frame_shape],
              "train_trials": int(n_train), "rig": rig}
    stamp = rois_dir / "rig.json"
    same = (not force and stamp.is_file() and json.loads(stamp.read_text()) == params
            and (rois_dir / "stat.npy").is_file())
    model_ok = model_dir is None or (Path(model_dir) / "card.json").is_file()
    if same and model_ok:
        log.info("virtual rig files in %s%s are up to date", rois_dir, f" and {model_dir}" if model_dir else "")
        return {"rois": str(rois_dir), "model": str(model_dir) if model_dir else None, "written": False}
    rig = VirtualRig(n_neurons, seed, n_train=n_train, n_oracle=1, rig=rig)
    scope = Microscope(n_neurons, seed=seed, frame_shape=tuple(frame_shape), fps=FPS)
    if model_dir is None:
        scope.save_rois(rois_dir)
    else:
        _, calib = calibrate(rig, scope, rois_dir, progress)
        card, dec = fit_calibration(calib, n_neurons, "virtual rig calibration block (two-photon, live "
                                    f"extraction chain), seed {seed}, rig profile {rig.rig}")
        model_dir_io.save(model_dir, card, dec.arrays())
        decode.load(model_dir)  # it loads back
    stamp.write_text(json.dumps(params) + "\n")
    return {"rois": str(rois_dir), "model": str(model_dir) if model_dir else None, "written": True}
