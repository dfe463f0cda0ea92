"""How far can the warm start go with a perfect encoder? The rig's own ground-truth population,
written as a differentiable torch encoder (noise-free rates, each neuron's response scale fitted on
a few train trials), run through the same iterative inverse (`rtdecode.decode.inverse.invert`,
same mask, same settings) from the same start: the ridge (= amortized) reconstruction of the
decoder table. Its pixel_corr bounds what a better learned encoder can give the warm start on
this rig (up to the inverse's own settings), against the +0.1 target of issue 14.

    python benchmarks/experiments/oracle_inverse.py --dataset /work/data/rig_v2/realistic_n4000_t60_o10_s0 \
        --model /work/data/rig_v2/models_v3/s0_n4000_of4000_amortized \
        --ridge-rec /work/data/rig_v2/models_v3/rec_s0_n4000_of4000_ridge \
        --warm-rec /work/data/rig_v2/models_v3/rec_s0_n4000_of4000_warm --seed 0 --trials 5 \
        --iterations 40 --json benchmarks/results/oracle_inverse.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from scipy import ndimage

from rtdecode import metrics
from rtdecode.decode.encoder import PIX_CENTRE, PIX_SCALE, behaviour_matrix
from rtdecode.decode.inverse import InverseConfig, invert
from rtdecode.offline.dataset import Dataset
from rtdecode.rig.population import KERNEL_LEN, Population
from rtdecode.stimuli.movies import FPS


class TruthEncoder(torch.nn.Module):
    """`Population.respond` without its noise, as the inverse's encoder: (B, L, H, W) frames
    normalised as (pixel - PIX_CENTRE) / PIX_SCALE and (B, L, 4) raw behaviour -> (B, L - first, N)
    expected responses per frame (scale * rate / FPS + offset, per neuron)."""

    def __init__(self, pop: Population, scale: np.ndarray | None = None, offset: np.ndarray | None = None):
        super().__init__()
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        self.frame_shape = (36, 64)
        self.cfg = SimpleNamespace(context=KERNEL_LEN - 1)
        self.bias = torch.nn.Parameter(torch.zeros(1))  # the inverse reads the device from it
        for name in ("filters", "quad", "kernels", "drive_mean", "drive_scale", "visual", "threshold", "rmax",
                     "baseline", "run_gain", "pupil_gain"):
            self.register_buffer(name, t(getattr(pop, name)))
        self.register_buffer("cidx", torch.as_tensor(pop.complex_idx, dtype=torch.long))
        self.register_buffer("simple", torch.as_tensor(pop.kind == 0))
        n = pop.n
        self.register_buffer("scale", t(np.ones(n) if scale is None else scale))
        self.register_buffer("offset", t(np.zeros(n) if offset is None else offset))

    def _temporal(self, z: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Causal filter over dim 1 of (B, L, n): frames before the clip are gray (zero)."""
        out = torch.zeros_like(z)
        L = z.shape[1]
        for lag in range(min(KERNEL_LEN, L)):
            out[:, lag:] += k[lag] * z[:, : L - lag]
        return out

    def forward(self, x: torch.Tensor, beh: torch.Tensor, first: int = 0) -> torch.Tensor:
        B, L = x.shape[:2]
        xg = x.reshape(B, L, -1) * (PIX_SCALE / 127.5)  # the rig's (pixel - 127.5) / 127.5
        lin = self._temporal(xg @ self.filters, self.kernels)
        kc = self.kernels[:, self.cidx]
        a = self._temporal(xg @ self.filters[:, self.cidx], kc)
        b = self._temporal(xg @ self.quad, kc)
        lin = lin.index_copy(2, self.cidx, torch.sqrt(a * a + b * b + 1e-8))
        lin = torch.where(self.simple, lin.clamp_min(0), lin)
        d = (lin - self.drive_mean) * self.drive_scale * self.visual
        rate = self.baseline + self.rmax * torch.nn.functional.softplus(2.0 * (d - self.threshold)) / 2.0
        pupil = beh[..., 0:1] - 1.0
        run = beh[..., 1:2].clamp_min(0) / 10.0
        rate = rate * (1 + self.run_gain * run + self.pupil_gain * pupil).clamp_min(0.1)
        out = (self.scale * rate / FPS + self.offset).clamp_min(1e-3)
        return out[:, first:]


@torch.no_grad()
def predict(enc: TruthEncoder, video: np.ndarray, beh: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(((video - PIX_CENTRE) / PIX_SCALE).astype(np.float32))[None]
    return enc(x, torch.from_numpy(beh)[None])[0].numpy()


def calibrate(enc: TruthEncoder, ds: Dataset, ids: list[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per neuron least squares response ~ scale * rate / FPS + offset on train trials."""
    P, R = [], []
    for i in ids:
        tr = ds.load(i)
        P.append(predict(enc, tr.video, behaviour_matrix(tr.behavior, tr.pupil_center)))
        R.append(tr.responses[:n].T)
    P, R = np.concatenate(P), np.concatenate(R)
    pm, rm = P.mean(0), R.mean(0)
    scale = ((P - pm) * (R - rm)).sum(0) / np.maximum(((P - pm) ** 2).sum(0), 1e-12)
    scale = np.maximum(scale, 1e-3)
    return scale, rm - scale * pm


def single_trial_corr(enc: TruthEncoder, ds: Dataset, ids: list[str], n: int) -> float:
    c = []
    for i in ids:
        tr = ds.load(i)
        p = predict(enc, tr.video, behaviour_matrix(tr.behavior, tr.pupil_center))[metrics.SKIP_FRAMES:]
        r = tr.responses[:n].T[metrics.SKIP_FRAMES:]
        p, r = p - p.mean(0), r - r.mean(0)
        c.append((p * r).sum(0) / np.sqrt((p * p).sum(0) * (r * r).sum(0) + 1e-12))
    return float(np.nanmean(np.concatenate(c)))


def rec_video(folder: Path, i: str, T: int) -> np.ndarray:
    return np.moveaxis(np.load(folder / "videos" / f"{i}.npy"), 2, 0)[:T].astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--model", required=True, help="the amortized model (its inverse mask is used)")
    ap.add_argument("--ridge-rec", required=True, help="reconstruct output of the ridge model (the start)")
    ap.add_argument("--warm-rec", default=None, help="reconstruct --method warm output (the learned encoder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trials", type=int, default=5, help="first K oracle trials")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--record-every", type=int, default=10)
    ap.add_argument("--lr", type=float, default=InverseConfig.lr, help="the inverse's step (default: rtdecode's)")
    ap.add_argument("--no-warm", action="store_true", help="skip the warm start (with --cold: cold only)")
    ap.add_argument("--learned", action="store_true",
                    help="invert with the model's learned encoder(s) instead of the truth (same starts and settings)")
    ap.add_argument("--cold", action="store_true", help="also invert from gray")
    ap.add_argument("--json", required=True)
    a = ap.parse_args()
    ds = Dataset(a.dataset)
    mask = ds.evaluation_mask()
    with np.load(Path(a.model) / "weights.npz") as z:
        inv_mask = z["mask"]
    t0 = time.perf_counter()
    pop = Population(ds.n_neurons, a.seed, "realistic")
    enc = TruthEncoder(pop)
    train = ds.require("train")
    oracle = ds.require("oracle")[: a.trials]
    scale, offset = calibrate(enc, ds, train[:8], ds.n_neurons)
    enc = TruthEncoder(pop, scale, offset)
    encoders, tag = [enc], "truth"
    if a.learned:
        from rtdecode import decode

        encoders, tag = decode.load(a.model)[1].encoders, "learned"
    out = {"what": __doc__.split("\n\n")[0], "command": "python " + " ".join(__import__("sys").argv),
           "dataset": a.dataset, "trials": oracle, "iterations": a.iterations, "lr": a.lr, "encoder": tag,
           "truth_encoder_single_trial_corr_oracle": single_trial_corr(enc, ds, oracle, ds.n_neurons),
           "setup_s": time.perf_counter() - t0}
    print(json.dumps(out, indent=1), flush=True)
    recs: dict[str, list] = {}
    truths = []
    for i in oracle:
        tr = ds.load(i)
        T = tr.video.shape[0]
        truths.append(tr.video)
        beh = behaviour_matrix(tr.behavior, tr.pupil_center)
        recs.setdefault("ridge", []).append(rec_video(Path(a.ridge_rec), i, T))
        if a.warm_rec:
            recs.setdefault("warm_learned_encoder", []).append(rec_video(Path(a.warm_rec), i, T))
        starts = ({} if a.no_warm else {f"warm_{tag}": recs["ridge"][-1]}) | ({f"cold_{tag}": None} if a.cold else {})
        for name, init in starts.items():
            snaps = {}
            cfg = InverseConfig(iterations=a.iterations, record_every=a.record_every, lr=a.lr)
            t1 = time.perf_counter()
            invert(encoders, tr.responses[: ds.n_neurons], beh, mask=inv_mask, init=init, cfg=cfg,
                   callback=lambda it, v: snaps.__setitem__(it, v))
            for it, v in snaps.items():
                v = ndimage.gaussian_filter(v, cfg.smooth_sigma, mode="nearest")
                recs.setdefault(f"{name}_{it}", []).append(v.astype(np.float32))
            print(f"trial {i} {name}: {time.perf_counter() - t1:.0f} s", flush=True)
    out["pixel_corr"] = {k: metrics.score(list(zip(v, truths)), mask)["pixel_corr"] for k, v in recs.items()}
    out["seconds"] = time.perf_counter() - t0
    Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out["pixel_corr"], indent=1))


if __name__ == "__main__":
    main()
