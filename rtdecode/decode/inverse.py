"""The iterative inverse of Bauer et al. (eLife 2026): optimise a video so that the encoder's
predicted activity matches the recorded activity.

Recipe (REFERENCES.md A): start from gray (127.5) or a given video (the warm start); Poisson loss
between predicted and recorded activity, behaviour held at its recorded values; 32-frame sliding
windows with stride 8, each window given the encoder's causal context; each window's gradient
L2-normalised, the windows covering a frame averaged, multiplied by the population mask, clipped
to +-1; momentum update (Bauer: lr 1000 in 0-255 pixel units, 1000 iterations; here lr 300 and
20 iterations by default, because with one small CPU-trained encoder and no regulariser the
reconstruction peaks early and then fits the spike noise: see "cold_curve" in
benchmarks/results/decoder_report.json, `python benchmarks/research/decoder_report.py`) and a
10-step linear warm-up; the video clipped to [0, 255] after every step. All windows of a trial go
through the encoder as one batch.
With several encoders each reconstructs independently and the reconstructions are averaged, then
Gaussian-smoothed (sigma 0.5 in t, y, x).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from rtdecode.decode.encoder import PIX_CENTRE, PIX_SCALE, Encoder, poisson_loss

log = logging.getLogger(__name__)


@dataclass
class InverseConfig:
    iterations: int = 20
    window: int = 32
    stride: int = 8
    lr: float = 300.0
    momentum: float = 0.9
    warmup: int = 10
    mask_threshold: float = 0.5
    smooth_sigma: float = 0.5
    window_batch: int = 64  # windows per encoder call (memory bound)
    record_every: int = 0  # >0: keep a copy of the video every k iterations (for convergence curves)
    extra: dict = field(default_factory=dict)


def window_starts(T: int, window: int, stride: int) -> list[int]:
    if T <= window:
        return [0]
    starts = list(range(0, T - window + 1, stride))
    if starts[-1] != T - window:
        starts.append(T - window)
    return starts


def invert(encoders: list[Encoder], responses: np.ndarray, behaviour: np.ndarray, *,
           mask: np.ndarray | None = None, init: np.ndarray | None = None,
           cfg: InverseConfig | None = None, smooth: bool = True,
           callback: Callable[[int, np.ndarray], None] | None = None) -> tuple[np.ndarray, dict]:
    """responses (N, T) recorded activity; behaviour (T, 4); mask (H, W) float (None: all pixels);
    init (T, H, W) 0-255 (None: gray). Returns the (T, H, W) reconstruction in 0-255 and info.

    `callback(iteration, video)` is called with the (single-model, unsmoothed) video every
    `cfg.record_every` iterations when set."""
    from scipy import ndimage

    cfg = cfg or InverseConfig()
    recs = []
    info = {"iterations": cfg.iterations, "models": len(encoders), "windows": 0, "encoder_frames_per_iter": 0}
    for k, enc in enumerate(encoders):
        rec, inf = _invert_one(enc, responses, behaviour, mask, init, cfg,
                               callback if k == 0 else None)
        recs.append(rec)
        info.update(inf)
    out = np.mean(recs, 0)
    if smooth and cfg.smooth_sigma > 0:
        out = ndimage.gaussian_filter(out, cfg.smooth_sigma, mode="nearest")
    return out.astype(np.float32), info


def _invert_one(enc: Encoder, responses, behaviour, mask, init, cfg: InverseConfig, callback):
    H, W = enc.frame_shape
    T = responses.shape[1]
    ctx = enc.cfg.context
    for p in enc.parameters():
        p.requires_grad_(False)
    dev = enc.bias.device  # the encoder's device (a rank's GPU under torchrun with NCCL)
    R = torch.from_numpy(np.ascontiguousarray(responses.T, dtype=np.float32)).to(dev)  # (T, N)
    Bh = torch.from_numpy(np.asarray(behaviour, np.float32)).to(dev)
    video = torch.full((T, H, W), PIX_CENTRE) if init is None else torch.from_numpy(np.asarray(init, np.float32)).clone()
    video = video.to(dev)
    m = torch.ones(H, W) if mask is None else torch.from_numpy((np.asarray(mask) >= cfg.mask_threshold).astype(np.float32))
    m = m.to(dev)
    win = min(cfg.window, T)
    starts = window_starts(T, win, cfg.stride)
    # Frame indices of each window, context included; -1 means "before the trial": gray.
    idx = torch.tensor([[s - ctx + j for j in range(ctx + win)] for s in starts], device=dev)
    valid = idx >= 0
    idx_c = idx.clamp_min(0)
    cover = torch.zeros(T, device=dev).index_add_(0, idx_c[valid], torch.ones(int(valid.sum()), device=dev))
    cover = cover.clamp_min(1).view(T, 1, 1)
    Rw = R[idx_c[:, ctx:]]  # (nw, win, N)
    Bw = Bh[idx_c] * valid[..., None]
    vel = torch.zeros_like(video)
    for it in range(cfg.iterations):
        g_tot = torch.zeros_like(video)
        for b0 in range(0, len(starts), cfg.window_batch):
            sl = slice(b0, b0 + cfg.window_batch)
            xw = ((video[idx_c[sl]] - PIX_CENTRE) / PIX_SCALE) * valid[sl, :, None, None]
            xw.requires_grad_(True)
            pred = enc(xw, Bw[sl], first=ctx)
            loss = poisson_loss(pred, Rw[sl])
            (g,) = torch.autograd.grad(loss, xw)
            g = g * valid[sl, :, None, None]
            g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            sel = valid[sl]
            g_tot.index_add_(0, idx_c[sl][sel], g[sel])
        g_tot = (g_tot / cover * m).clamp_(-1, 1)
        vel.mul_(cfg.momentum).add_(g_tot)
        lr = cfg.lr * min(1.0, (it + 1) / max(cfg.warmup, 1))
        video.sub_(lr * vel).clamp_(0, 255)
        if callback is not None and cfg.record_every and (it + 1) % cfg.record_every == 0:
            callback(it + 1, video.cpu().numpy().copy())
    for p in enc.parameters():
        p.requires_grad_(True)
    return video.cpu().numpy().copy(), {"windows": len(starts), "encoder_frames_per_iter": len(starts) * (ctx + win)}


def invert_trials(encoders: list[Encoder], trials: list[tuple[np.ndarray, np.ndarray]], *,
                  mask: np.ndarray | None = None, cfg: InverseConfig | None = None,
                  progress: bool = False, desc: str = "inverse", checkpoints=None,
                  name: str = "inverse_targets") -> list[np.ndarray]:
    """`invert` for each (responses, behaviour) trial. Under torchrun the trials are split across
    ranks (rank r takes trials r, r + world, ...) and every rank gets all reconstructions, in order
    (the same arrays one process computes: each trial is inverted independently). `checkpoints`
    (rtdecode.decode.distributed.Checkpoints) keeps the result under `name` for --resume."""
    import copy
    from dataclasses import asdict

    from tqdm import tqdm

    from rtdecode.decode import distributed as dist

    env = dist.current()
    ck = checkpoints or dist.no_checkpoints()
    if env.device.type == "cuda":  # invert on this rank's GPU
        encoders = [copy.deepcopy(e).to(env.device) for e in encoders]
    config = {"trials": len(trials), **{k: v for k, v in asdict(cfg or InverseConfig()).items() if k != "extra"}}
    resumed = ck.load(name, config=config)
    if resumed is not None:
        return [t.numpy() for t in resumed["targets"]]
    mine = list(range(env.rank, len(trials), env.world_size))
    done = {}
    for i in tqdm(mine, desc=desc, unit="trial", disable=not (progress and env.is_main), leave=False):
        r, b = trials[i]
        done[i] = invert(encoders, r, b, mask=mask, cfg=cfg)[0]
    for part in env.all_gather(done):
        done.update(part)
    out = [done[i] for i in range(len(trials))]
    ck.step(name, len(trials), True, lambda: {"config": config, "targets": [torch.from_numpy(t) for t in out]})
    return out
