"""A dynamic encoding model: video (+ behaviour) -> every neuron's activity at every frame (torch).

A small, CPU-trainable cousin of Bauer et al.'s DwiseNeuro encoder:
  core     factorised (2+1)D: a 9x9 spatial conv (stride 2, 36x64 -> 18x32) per frame, a causal
           depthwise temporal conv (10 frames, the length of a V1 temporal kernel), ELU, a 5x5
           spatial conv, a short causal depthwise temporal conv, ELU;
  readout  per neuron a point readout at a learned position (bilinear sampling of the core's
           feature map, positions initialised from each neuron's correlation with local contrast
           energy), a feature vector, a bias and behaviour weights (pupil, running, pupil centre);
  output   Softplus (expected activity per frame), trained with the Poisson loss and AdamW.

Time is causal and convolutional: the model maps a (B, T, H, W) clip to (B, T, N) predictions,
frames before the clip counting as a gray screen (0 after normalisation). `population_mask`
turns the readout positions into the analogue of Bauer's transparency mask.

Quality is reported with the Sensorium 2023 metric: per-neuron Pearson correlation between the
prediction and the recorded activity over the concatenated held-out trials, first 50 frames of
each trial skipped.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtdecode.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

PIX_CENTRE = 127.5  # gray; the inverse starts here and clips to [0, 255]
PIX_SCALE = 64.0
SENSORIUM_SKIP = 50
N_BEH = 4  # pupil dilation, running speed, pupil centre x, y


def normalise_video(video: np.ndarray | torch.Tensor):
    return (video - PIX_CENTRE) / PIX_SCALE


@dataclass
class EncoderConfig:
    c1: int = 8
    c2: int = 16
    k1: int = 9
    k2: int = 3
    kt1: int = 10
    kt2: int = 3

    @property
    def context(self) -> int:
        """Frames of history the prediction at a frame depends on, minus one."""
        return self.kt1 - 1 + self.kt2 - 1


def _causal_depthwise(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x (B, C, T, h, w); weight (C, K): y[t] = sum_k weight[:, k] * x[t - K + 1 + k], zero-padded."""
    K = weight.shape[1]
    xp = F.pad(x, (0, 0, 0, 0, K - 1, 0))
    T = x.shape[2]
    y = 0
    for k in range(K):
        y = y + weight[:, k].view(1, -1, 1, 1, 1) * xp[:, :, k : k + T]
    return y


class Encoder(nn.Module):
    def __init__(self, n_neurons: int, frame_shape=(36, 64), cfg: EncoderConfig | None = None):
        super().__init__()
        cfg = cfg or EncoderConfig()
        self.cfg = cfg
        self.n_neurons = n_neurons
        self.frame_shape = tuple(frame_shape)
        self.s1 = nn.Conv2d(1, cfg.c1, cfg.k1, stride=2, padding=cfg.k1 // 2)
        t1 = torch.zeros(cfg.c1, cfg.kt1)
        t1[:, -4:] = 0.25  # start as a short causal average (the kernels peak 1.5-4 frames back)
        self.t1 = nn.Parameter(t1 + 0.02 * torch.randn(cfg.c1, cfg.kt1))
        self.s2 = nn.Conv2d(cfg.c1, cfg.c2, cfg.k2, padding=cfg.k2 // 2)
        t2 = torch.zeros(cfg.c2, cfg.kt2)
        t2[:, -1] = 1.0
        self.t2 = nn.Parameter(t2)
        # readout
        self.pos = nn.Parameter(torch.zeros(n_neurons, 2))  # (x, y) in [-1, 1] grid coordinates
        self.feat = nn.Parameter(torch.randn(n_neurons, cfg.c2) / math.sqrt(cfg.c2))
        self.bias = nn.Parameter(torch.full((n_neurons,), -2.0))
        self.beh = nn.Parameter(torch.zeros(n_neurons, N_BEH))
        self.register_buffer("beh_mean", torch.zeros(N_BEH))
        self.register_buffer("beh_std", torch.ones(N_BEH))

    def core(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, H, W) normalised video -> (B, c2, T, h, w) features."""
        B, T, H, W = x.shape
        f = self.s1(x.reshape(B * T, 1, H, W))
        h, w = f.shape[-2:]
        f = f.view(B, T, -1, h, w).transpose(1, 2)
        f = F.elu(_causal_depthwise(f, self.t1))
        f = self.s2(f.transpose(1, 2).reshape(B * T, -1, h, w))
        f = f.view(B, T, -1, h, w).transpose(1, 2)
        return F.elu(_causal_depthwise(f, self.t2))

    def forward(self, video: torch.Tensor, beh: torch.Tensor, neurons: slice | None = None,
                first: int = 0) -> torch.Tensor:
        """video (B, T, H, W) normalised; beh (B, T, 4) raw -> expected activity (B, T - first, N).

        `first` > 0 reads out only frames `first`.. (the earlier ones serve as causal context):
        the per-neuron readout, not the core, is most of the cost at thousands of neurons."""
        feats = self.core(video)[:, :, first:]
        beh = beh[:, first:]
        B, C, T, h, w = feats.shape
        pos = self.pos if neurons is None else self.pos[neurons]
        feat = self.feat if neurons is None else self.feat[neurons]
        bias = self.bias if neurons is None else self.bias[neurons]
        bw = self.beh if neurons is None else self.beh[neurons]
        grid = pos.clamp(-1, 1).view(1, 1, -1, 2).expand(B * T, 1, -1, 2)
        fm = feats.transpose(1, 2).reshape(B * T, C, h, w)
        s = F.grid_sample(fm, grid, mode="bilinear", padding_mode="border", align_corners=True)  # (BT, C, 1, N)
        # multiply-and-sum rather than einsum: einsum lowers to a bmm batched over neurons, whose
        # backward copies per neuron (einsum 1.7x slower at 4,000 neurons, one thread, on a loaded
        # machine: benchmarks/results/readout_bench.json, `python benchmarks/research/readout.py`)
        a = (s[:, :, 0] * feat.T).sum(1).view(B, T, -1)
        zb = (beh - self.beh_mean) / self.beh_std
        a = a + bias + zb @ bw.T
        return F.softplus(a) + 1e-4

    # -- the population mask ---------------------------------------------------------------
    def positions_px(self) -> np.ndarray:
        """(N, 2) readout positions (y, x) in frame pixels."""
        H, W = self.frame_shape
        p = self.pos.detach().clamp(-1, 1).cpu().numpy()
        return np.stack([(p[:, 1] + 1) / 2 * (H - 1), (p[:, 0] + 1) / 2 * (W - 1)], 1)

    def population_mask(self, sigma: float = 2.0, weights: np.ndarray | None = None) -> np.ndarray:
        """(H, W) float in [0, 1]: readout positions (weighted by the neurons' feature norms or
        `weights`), smoothed by a Gaussian of `sigma` px, divided by 0.6 x its 95th percentile and
        clipped to 1 (a uniformly covered region is 1, its edge ~0.8). Bauer et al. optimise pixels with mask >= 0.5."""
        from scipy import ndimage

        H, W = self.frame_shape
        py = self.positions_px()
        wts = self.feat.detach().norm(dim=1).cpu().numpy() if weights is None else np.asarray(weights)
        hist = np.zeros((H, W))
        iy = np.clip(np.round(py[:, 0]).astype(int), 0, H - 1)
        ix = np.clip(np.round(py[:, 1]).astype(int), 0, W - 1)
        np.add.at(hist, (iy, ix), wts)
        dens = ndimage.gaussian_filter(hist, sigma, mode="constant")
        ref = 0.6 * np.percentile(dens, 95)
        return np.clip(dens / max(ref, 1e-12), 0, 1).astype(np.float32)


def warmup_cosine(opt, steps: int, warmup_frac: float = 0.05):
    """LambdaLR: linear warm-up over `warmup_frac` of the steps, then cosine decay to 5%."""
    wu = max(1, int(steps * warmup_frac))

    def f(i):
        if i < wu:
            return (i + 1) / wu
        return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, (i - wu) / max(1, steps - wu))))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def poisson_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Poisson negative log-likelihood (up to a constant), summed."""
    return (pred - target * torch.log(pred)).sum()


def behaviour_matrix(behavior: np.ndarray, pupil_center: np.ndarray) -> np.ndarray:
    """(2, T) + (2, T) -> (T, 4) float32."""
    return np.concatenate([behavior, pupil_center], 0).T.astype(np.float32)


def init_positions(videos: list[np.ndarray], responses: list[np.ndarray], frame_shape, lags=(1, 2, 3, 4, 5)) -> np.ndarray:
    """(N, 2) grid positions (x, y in [-1, 1]) at each neuron's peak correlation with local
    stimulus energy and luminance (on an 18x32 grid), a few frames earlier."""
    from scipy import ndimage

    H, W = frame_shape
    h, w = (H + 1) // 2, (W + 1) // 2
    feats, acts = [], []
    for v, r in zip(videos, responses):
        x = normalise_video(v.astype(np.float32))
        lum = ndimage.uniform_filter(x, (1, 5, 5))
        en = ndimage.uniform_filter((x - lum) ** 2, (1, 5, 5))
        lum = lum[:, ::2, ::2].reshape(len(x), -1)
        en = en[:, ::2, ::2].reshape(len(x), -1)
        T = len(x)
        L = max(lags)
        pl = np.zeros_like(lum); pe = np.zeros_like(en)
        for lag in lags:  # activity at t reflects the stimulus a few frames before
            pl[lag:] += lum[: T - lag]; pe[lag:] += en[: T - lag]
        feats.append(np.concatenate([pl, pe], 1)[L:]); acts.append(r[:, L:].T)
    Fm = np.concatenate(feats).astype(np.float32)
    A = np.concatenate(acts).astype(np.float32)
    Fm = (Fm - Fm.mean(0)) / (Fm.std(0) + 1e-6)
    A = (A - A.mean(0)) / (A.std(0) + 1e-6)
    C = (A.T @ Fm) / len(A)  # (N, 2P)
    P = h * w
    score = np.abs(C[:, :P]) + np.maximum(C[:, P:], 0)
    score = ndimage.gaussian_filter(score.reshape(-1, h, w), (0, 1, 1)).reshape(len(score), -1)
    best = score.argmax(1)
    yy, xx = np.divmod(best, w)
    py = yy * 2 / (H - 1) * 2 - 1
    px = xx * 2 / (W - 1) * 2 - 1
    return np.stack([px, py], 1).clip(-1, 1).astype(np.float32)


class TrialData:
    """Trials held in memory as torch tensors: normalised videos (T, H, W), behaviour (T, 4),
    activity (T, N)."""

    def __init__(self, videos, behaviours, responses):
        self.videos = [torch.from_numpy(normalise_video(np.asarray(v, np.float32))) for v in videos]
        self.behs = [torch.from_numpy(np.asarray(b, np.float32)) for b in behaviours]
        self.resps = [torch.from_numpy(np.ascontiguousarray(np.asarray(r, np.float32).T)) for r in responses]
        if not self.videos:
            raise ConfigError("no trials given")
        n = {r.shape[1] for r in self.resps}
        if len(n) != 1:
            raise ConfigError(f"trials disagree on the number of neurons: {sorted(n)}")

    def __len__(self):
        return len(self.videos)


@torch.no_grad()
def predict_trial(model: Encoder, video_norm: torch.Tensor, beh: torch.Tensor, chunk: int = 64) -> torch.Tensor:
    """Whole-trial prediction (T, N), in chunks of `chunk` frames with causal context."""
    ctx = model.cfg.context
    T = video_norm.shape[0]
    dev = model.bias.device
    out = []
    for s in range(0, T, chunk):
        lo = max(0, s - ctx)
        out.append(model(video_norm[None, lo : s + chunk].to(dev), beh[None, lo : s + chunk].to(dev),
                         first=s - lo)[0].cpu())
    return torch.cat(out)


def sensorium_corr(model: Encoder, data: TrialData, skip: int = SENSORIUM_SKIP) -> np.ndarray:
    """Per-neuron correlation over the concatenated trials, first `skip` frames of each dropped."""
    model.eval()
    P, R = [], []
    for v, b, r in zip(data.videos, data.behs, data.resps):
        P.append(predict_trial(model, v, b)[skip:]); R.append(r[skip:])
    P = torch.cat(P).double(); R = torch.cat(R).double()
    P = P - P.mean(0); R = R - R.mean(0)
    den = (P.pow(2).sum(0) * R.pow(2).sum(0)).sqrt()
    c = (P * R).sum(0) / den.clamp_min(1e-12)
    c[den <= 1e-12] = 0.0
    return c.numpy()


def constant_corr_baseline(train: TrialData, val: TrialData) -> float:
    """Poisson NLL per frame of a per-neuron constant (the train mean) on `val` (the baseline a
    model must beat; its correlation is undefined)."""
    m = torch.cat(train.resps).mean(0).clamp_min(1e-4)
    nll = sum(float(poisson_loss(m.expand_as(r), r)) for r in val.resps)
    return nll / sum(len(r) for r in val.resps)


def poisson_nll(model: Encoder, data: TrialData) -> float:
    """Mean Poisson NLL per frame on `data` (summed over neurons)."""
    model.eval()
    tot, n = 0.0, 0
    for v, b, r in zip(data.videos, data.behs, data.resps):
        tot += float(poisson_loss(predict_trial(model, v, b), r)); n += len(r)
    return tot / n


def train_encoder(train: TrialData, val: TrialData | None, *, cfg: EncoderConfig | None = None,
                  frame_shape=(36, 64), steps: int = 1500, batch: int = 6, clip_len: int = 32,
                  lr: float = 3e-3, weight_decay: float = 1e-4, seed: int = 0, eval_every: int = 250,
                  time_limit_s: float | None = None, progress: bool = False,
                  checkpoints=None, name: str = "encoder", env=None) -> tuple[Encoder, dict]:
    """Train on random clips of `clip_len` frames (+ causal context); keep the step with the best
    validation correlation. Returns (model in eval mode, on the CPU, info).

    Under torchrun (rtdecode.decode.distributed) the model is in DDP and each rank computes its
    share of every global batch of `batch` clips; `checkpoints` (distributed.Checkpoints) saves
    and resumes the loop under `name`; `env` (default: distributed.current()) overrides that."""
    from tqdm import tqdm

    from rtdecode.decode import distributed as dist

    env = env or dist.current()
    ck = checkpoints or dist.no_checkpoints()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    N = train.resps[0].shape[1]
    model = Encoder(N, frame_shape, cfg)
    ctx = model.cfg.context
    allb = torch.cat(train.behs)
    model.beh_mean.copy_(allb.mean(0)); model.beh_std.copy_(allb.std(0).clamp_min(1e-3))
    t0 = time.perf_counter()
    pos = init_positions([(v.numpy() * PIX_SCALE + PIX_CENTRE) for v in train.videos],
                         [r.numpy().T for r in train.resps], frame_shape)
    with torch.no_grad():
        model.pos.copy_(torch.from_numpy(pos))
        mean_rate = torch.cat(train.resps).mean(0).clamp_min(1e-3)
        model.bias.copy_(torch.log(torch.expm1(mean_rate)))  # softplus^-1 of the mean rate
    init_s = time.perf_counter() - t0
    log.info("encoder: readout positions initialised in %.1f s", init_s)
    params = [{"params": [p for n, p in model.named_parameters() if n != "pos"], "weight_decay": weight_decay},
              {"params": [model.pos], "lr": lr * 0.1, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(params, lr=lr)
    sched = warmup_cosine(opt, steps)
    lengths = np.array([len(v) for v in train.videos])
    best = (-np.inf, None, 0)
    history = []
    start = 0
    config = {"steps": steps, "batch": batch, "clip_len": clip_len, "lr": lr, "seed": seed, "neurons": N}
    resumed = ck.load(name, rng, config)
    if resumed is not None:
        model.load_state_dict(resumed["model"]); opt.load_state_dict(resumed["opt"])
        sched.load_state_dict(resumed["sched"])
        best = (resumed["best_val"], resumed["best_state"], resumed["best_step"])
        history, start = resumed["history"], resumed["step"]
    ddp = env.wrap(model)  # model moved to env.device; DDP only with several ranks
    dev = env.device
    share = env.share(batch)
    n_local = share.stop - share.start
    if env.rank > 0:  # dropout etc.: an own stream per rank (rank 0's is the one-process stream)
        torch.manual_seed(seed + 7919 * env.rank)
    L = clip_len + ctx
    step = start - 1
    bar = tqdm(range(start, steps), desc=name, unit="step", disable=not (progress and env.is_main), leave=False)
    for step in bar:
        ddp.train()
        trials = rng.integers(len(train), size=batch)
        starts = [int(rng.integers(-ctx, max(lengths[i] - L, -ctx) + 1)) for i in trials]
        vids, behs, resps = [], [], []
        for i, s in list(zip(trials, starts))[share]:  # every rank draws the global batch, keeps its share
            lo = max(s, 0)
            v, b, r = train.videos[i][lo : s + L], train.behs[i][lo : s + L], train.resps[i][lo : s + L]
            padn = L - len(v)
            if padn:  # clip starts before the trial (gray screen) or trial shorter than a clip
                v = F.pad(v, (0, 0, 0, 0, padn, 0)); b = F.pad(b, (0, 0, padn, 0), value=0.0)
                r = F.pad(r, (0, 0, padn, 0))
            vids.append(v); behs.append(b); resps.append(r)
        V, Bh, R = torch.stack(vids).to(dev), torch.stack(behs).to(dev), torch.stack(resps).to(dev)
        pred = ddp(V, Bh, first=ctx)
        loss = poisson_loss(pred, R[:, ctx:]) / (n_local * clip_len * N) * env.loss_weight(n_local, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(); sched.step()
        if progress and env.is_main:
            bar.set_postfix(loss=f"{loss.item():.4f}")
        last = step == steps - 1
        over = time_limit_s is not None and env.main_only(lambda: time.perf_counter() - t0 > time_limit_s)
        if val is not None and ((step + 1) % eval_every == 0 or last or over):
            c = env.main_only(lambda: float(np.mean(sensorium_corr(model, val))))
            history.append({"step": step + 1, "val_corr": c, "train_loss": loss.item()})
            log.info("encoder step %d: validation correlation %.4f", step + 1, c)
            if c > best[0]:
                best = (c, {k: v.detach().clone() for k, v in model.state_dict().items()}, step + 1)
        ck.step(name, step + 1, last or over, lambda: {
            "config": config, "model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
            "best_val": best[0], "best_state": best[1], "best_step": best[2], "history": history}, rng)
        if over:
            log.info("encoder: time limit reached after %d steps", step + 1)
            break
    if best[1] is not None:
        model.load_state_dict(best[1])
    model.eval()
    model.cpu()
    info = {"steps": int(step + 1), "best_step": best[2], "val_corr": (None if val is None else best[0]),
            "history": history, "train_seconds": time.perf_counter() - t0, "init_seconds": init_s,
            "config": vars(model.cfg) | {"batch": batch, "clip_len": clip_len, "lr": lr}}
    return model, info


def train_ensemble(train: TrialData, val: TrialData | None, models: int, *, seed: int = 0, checkpoints=None,
                   say=None, spread: bool | None = None, **kw) -> tuple[list[Encoder], list[dict]]:
    """`models` encoders, member k trained by `train_encoder(seed=seed + k, name=f"encoder{k}", **kw)`.

    Under torchrun with at least as many members as ranks, the members are spread over the ranks
    (member k on rank k % world, each trained alone: no per-step communication, and exactly the
    members one process trains) and then broadcast to every rank; with fewer members than ranks
    each member is trained by all ranks in DDP. `spread` True / False forces one way (benchmarks)."""
    from rtdecode.decode import distributed as dist

    env = dist.current()
    say = say or (lambda s: log.info("fit: %s", s))
    if spread is None:
        spread = models >= env.world_size
    if not (env.distributed and spread):
        out = []
        for k in range(models):
            say(f"training encoder {k + 1}/{models}")
            out.append(train_encoder(train, val, seed=seed + k, checkpoints=checkpoints, name=f"encoder{k}", **kw))
        return [m for m, _ in out], [i for _, i in out]
    alone = dist.DistEnv()
    ck = None if checkpoints is None else dist.Checkpoints(checkpoints.folder, checkpoints.every, checkpoints.resume, alone)
    mine = {}
    for k in range(env.rank, models, env.world_size):
        say(f"training encoder {k + 1}/{models} on rank {env.rank}")
        mine[k] = train_encoder(train, val, seed=seed + k, checkpoints=ck, name=f"encoder{k}", env=alone, **kw)
    encoders, infos = [], []
    for k in range(models):
        owner = k % env.world_size
        sd, info = env.broadcast(({n: t.detach() for n, t in mine[k][0].state_dict().items()}, mine[k][1])
                                 if env.rank == owner else None, src=owner)
        if env.rank == owner:
            m = mine[k][0]
        else:
            m = Encoder(train.resps[0].shape[1], kw.get("frame_shape", (36, 64)), kw.get("cfg"))
            m.load_state_dict(sd)
            m.eval()
        encoders.append(m); infos.append({**info, "rank": owner})
    return encoders, infos


# -- saving: plain state_dict arrays in an npz, prefixed per ensemble member ------------------

def state_arrays(model: Encoder, prefix: str) -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def from_arrays(arrays: dict[str, np.ndarray], prefix: str, n_neurons: int, frame_shape, cfg: dict) -> Encoder:
    keys = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}
    if not keys:
        raise ModelError(f"weights.npz holds no encoder '{prefix}'")
    model = Encoder(n_neurons, frame_shape, EncoderConfig(**{k: cfg[k] for k in vars(EncoderConfig())}))
    expect = model.state_dict()
    for k, t in expect.items():
        if k not in keys:
            raise ModelError(f"weights.npz has no '{prefix}{k}'")
        if tuple(keys[k].shape) != tuple(t.shape):
            raise ModelError(f"weights.npz '{prefix}{k}' has shape {tuple(keys[k].shape)}, the card implies {tuple(t.shape)}")
    model.load_state_dict({k: torch.from_numpy(np.asarray(keys[k])) for k in expect})
    model.eval()
    return model
