"""The amortized decoder: a small feed-forward network, activity window (N, bins) -> frame (H, W).

Network (all inside `torch_module()`, so an exported graph takes raw activity and gives 0-255):
  z-score per neuron -> a per-neuron temporal projection (bins -> k, initialised with Gaussian
  bumps as the ridge basis) -> Linear(N*k, hidden) -> GELU -> Linear(hidden, H*W) -> plus a
  residual 3x3-conv refinement -> * PIX_SCALE + pixel mean -> clamp to [0, 255].

Training (`train_amortized`): pairs (activity window, target frame). The warm start fits it first
to the iterative inverse's reconstructions of the calibration trials, then fine-tunes it on the
true frames; encoder-synthesised pairs (the encoder's Poisson-sampled response to extra movies)
are added to both phases.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtdecode.decode.card import ModelCard
from rtdecode.decode.encoder import PIX_SCALE, warmup_cosine
from rtdecode.decode import methods
from rtdecode.decode.methods import AMORTIZED_KINDS
from rtdecode.decode.ridge import temporal_basis
from rtdecode.decode.model import load_module_arrays
from rtdecode.errors import ModelError

log = logging.getLogger(__name__)


@dataclass
class AmortizedConfig:
    kind: ClassVar[str] = "standalone"  # rtdecode.decode.methods.LEGACY_AMORTIZED (not in the card: v1 cards have none)
    k: int = 2
    hidden: int = 512
    dropout: float = 0.2


class AmortizedNet(nn.Module):
    """float32 (B, N, bins) raw activity, oldest bin first -> (B, H, W) in 0-255."""

    def __init__(self, n_neurons: int, bins: int, frame_shape=(36, 64), cfg: AmortizedConfig | None = None):
        super().__init__()
        cfg = cfg or AmortizedConfig()
        self.cfg = cfg
        self.n_neurons, self.bins, self.frame_shape = n_neurons, bins, tuple(frame_shape)
        H, W = frame_shape
        basis = torch.from_numpy(temporal_basis(bins, cfg.k))
        self.temporal = nn.Parameter(basis.unsqueeze(0).repeat(n_neurons, 1, 1))  # (N, bins, k)
        self.fc1 = nn.Linear(n_neurons * cfg.k, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, H * W)
        self.ref1 = nn.Conv2d(1, 16, 3, padding=1)
        self.ref2 = nn.Conv2d(16, 1, 3, padding=1)
        nn.init.zeros_(self.ref2.weight); nn.init.zeros_(self.ref2.bias)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("act_mean", torch.zeros(n_neurons, 1))
        self.register_buffer("act_std", torch.ones(n_neurons, 1))
        self.register_buffer("pixel_mean", torch.full((H, W), 127.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.frame_shape
        z = (x - self.act_mean) / self.act_std
        z = torch.einsum("bnt,ntk->bnk", z, self.temporal).flatten(1)
        h = self.drop(F.gelu(self.fc1(self.drop(z))))
        y = self.fc2(h).view(-1, 1, H, W)
        y = y + self.ref2(F.gelu(self.ref1(y)))
        return (y[:, 0] * PIX_SCALE + self.pixel_mean).clamp(0.0, 255.0)

    def macs_per_frame(self) -> int:
        H, W = self.frame_shape
        n, k, hdn = self.n_neurons, self.cfg.k, self.cfg.hidden
        return n * self.bins * k + n * k * hdn + hdn * H * W + H * W * 16 * 9 * 2


def windows_of_trial(responses: np.ndarray, lag_min: int, bins: int, fill: np.ndarray | None = None) -> np.ndarray:
    """(N, T) -> (T, N, bins): frame f's window is bins [f+lag_min, f+lag_min+bins); bins
    outside the trial are filled with `fill` (N,), by default each neuron's trial mean."""
    N, T = responses.shape
    lo = max(0, -lag_min)
    hi = lag_min + bins
    fill = responses.mean(1) if fill is None else np.asarray(fill, np.float32).reshape(N)
    pad = np.repeat(fill[:, None], lo + max(hi, 0) + 1, 1)
    padded = np.concatenate([pad[:, :lo], responses, pad[:, : max(hi, 0) + 1]], 1)
    start = lo + lag_min
    idx = start + np.arange(T)[:, None] + np.arange(bins)[None, :]
    return np.ascontiguousarray(padded[:, idx].transpose(1, 0, 2), dtype=np.float32)


class PairSet:
    """Training pairs held as per-trial (N, T) activity and (T, H, W) targets; windows are cut on
    the fly (the full window tensor would be N x bins x frames)."""

    def __init__(self, lag_min: int, bins: int):
        self.lag_min, self.bins = lag_min, bins
        self.acts: list[torch.Tensor] = []
        self.targets: list[torch.Tensor] = []

    def add(self, responses: np.ndarray, frames: np.ndarray) -> None:
        self.acts.append(torch.from_numpy(np.asarray(responses, np.float32)))
        self.targets.append(torch.from_numpy(np.asarray(frames, np.float32)))

    def __len__(self):
        return sum(len(t) for t in self.targets)

    def batch(self, rng: np.random.Generator, size: int, share: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor]:
        """A random batch of `size` pairs; `share`: the part of it this rank builds (all ranks
        draw the same global batch)."""
        lens = np.array([len(t) for t in self.targets])
        trial = rng.choice(len(lens), size=size, p=lens / lens.sum())
        frames = [int(rng.integers(lens[i])) for i in trial]
        xs, ys = [], []
        for i, f in list(zip(trial, frames))[share]:
            xs.append(self._window(i, f)); ys.append(self.targets[i][f])
        return torch.stack(xs), torch.stack(ys)

    def _window(self, i: int, f: int) -> torch.Tensor:
        a = self.acts[i]
        T = a.shape[1]
        j = torch.arange(f + self.lag_min, f + self.lag_min + self.bins)
        ok = (j >= 0) & (j < T)
        w = a.mean(1, keepdim=True).repeat(1, self.bins)
        w[:, ok] = a[:, j[ok]]
        return w


def confident_gain(scores, base, z: float) -> tuple[float, float, bool]:
    """Per-trial scores against the same trials' base scores: (mean gain, its standard error, whether
    the mean is more than z standard errors above zero). One trial: never confident."""
    g = np.asarray(scores, np.float64) - np.asarray(base, np.float64)
    se = float(g.std(ddof=1) / np.sqrt(len(g))) if len(g) > 1 else float("inf")
    return float(g.mean()), se, bool(g.mean() > z * se)


def train_amortized(net: AmortizedNet, phases: list[tuple[str, PairSet, int]], *, batch: int = 64,
                    lr: float = 1e-3, weight_decay: float = 1e-2, seed: int = 0,
                    val: tuple[list[np.ndarray], list[np.ndarray]] | None = None, eval_every: int = 200,
                    progress: bool = False, checkpoints=None, name: str = "amortized",
                    patience: int | None = None, min_gain_z: float | None = None,
                    val_mask: np.ndarray | None = None) -> dict:
    """Train `net` in place through `phases` [(name, pairs, steps), ...] (AdamW, cosine decay per
    phase). `val` = (responses list, true videos list) is scored as docs/design.md 3.3 scores held-out
    trials (pixel_corr over `val_mask`, the dataset's evaluation mask; None: the full frame); the
    best step of the last phase is kept. Returns info. Under torchrun the network is in DDP, each
    rank building its share of every global batch (rtdecode.decode.distributed); `checkpoints`
    saves and resumes the loop under `name`; `net` ends in eval mode on the CPU. `patience` K: the
    last phase stops once K validations in a row have not beaten its best (the best is kept).
    `min_gain_z` z (for a network whose step 0 is already a decoder, the ridge + residual): a later
    step replaces step 0 only if its gain over step 0, paired per validation trial, is at least z
    standard errors above zero; a gain the validation trials do not agree on is noise or a
    stimulus-set difference (decoder_table.json, seed 0 at 1,000 neurons: +0.016 on validation came
    with -0.012 on the held-out photographs)."""
    from tqdm import tqdm

    from rtdecode import metrics
    from rtdecode.decode import distributed as dist

    env = dist.current()
    ck = checkpoints or dist.no_checkpoints()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    info = {"phases": []}
    t0 = time.perf_counter()
    config = {"phases": [[n, int(st), len(pr)] for n, pr, st in phases], "batch": batch, "lr": lr, "seed": seed}
    resumed = ck.load(name, rng, config)
    done_phases = 0
    if resumed is not None:
        net.load_state_dict(resumed["net"])
        info["phases"], done_phases = resumed["info_phases"], resumed["phase"]
    ddp = env.wrap(net)
    dev = env.device
    share = env.share(batch)
    n_local = share.stop - share.start
    if env.rank > 0:  # dropout: an own stream per rank (rank 0's is the one-process stream)
        torch.manual_seed(seed + 7919 * env.rank)
    def val_scores():
        """pixel_corr (over val_mask) on the validation trials: (mean, per trial)."""
        sc = metrics.score([(predict_trial(net, r), v) for r, v in zip(*val)], val_mask)
        return sc["pixel_corr"], [t["pixel_corr"] for t in sc["per_trial"]]

    for p, (pname, pairs, steps) in enumerate(phases):
        if steps <= 0 or len(pairs) == 0 or p < done_phases:
            continue
        opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=lr, weight_decay=weight_decay)
        sched = warmup_cosine(opt, steps)
        best = (-np.inf, None, 0)
        hist = []
        start = 0
        base_trials = None  # step 0's per-trial validation scores (min_gain_z)
        if resumed is not None and resumed["phase"] == p:  # in the middle of this phase
            opt.load_state_dict(resumed["opt"]); sched.load_state_dict(resumed["sched"])
            best = (resumed["best_val"], resumed["best_state"], resumed["best_step"])
            base_trials = resumed.get("base_trials")
            hist, start = resumed["history"], resumed["step"]
        if val is not None and pname == phases[-1][0] and start == 0:
            # step 0 competes: a network that starts as a good decoder (ridge + zero residual) keeps it
            s, base_trials = env.main_only(val_scores)
            hist.append({"step": 0, "val_pixel_corr": s})
            best = (s, {k: v.detach().clone() for k, v in net.state_dict().items()}, 0)
        phase_info = {"name": pname, "steps": steps, "pairs": len(pairs), "history": hist, "best_step": best[2]}
        bar = tqdm(range(start, steps), desc=f"amortized:{pname}", unit="step",
                   disable=not (progress and env.is_main), leave=False)
        for step in bar:
            ddp.train()
            x, y = pairs.batch(rng, batch, share)
            loss = F.mse_loss(ddp(x.to(dev)), y.to(dev)) / PIX_SCALE**2 * env.loss_weight(n_local, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step(); sched.step()
            if val is not None and ((step + 1) % eval_every == 0 or step == steps - 1):
                s, per = env.main_only(val_scores)
                h = {"step": step + 1, "val_pixel_corr": s}
                ok = True
                if min_gain_z is not None and base_trials is not None:
                    h["gain_over_step0"], h["gain_se"], ok = confident_gain(per, base_trials, min_gain_z)
                hist.append(h)
                if s > best[0] and ok:
                    best = (s, {k: v.detach().clone() for k, v in net.state_dict().items()}, step + 1)
            # evaluations since the best one (from the history, so a resumed loop counts the same)
            stale = sum(1 for h in hist if h["step"] > best[2])
            stop = bool(patience) and pname == phases[-1][0] and stale >= patience and step < steps - 1
            last = step == steps - 1 or stop
            if last and best[1] is not None and pname == phases[-1][0]:
                net.load_state_dict(best[1])
            phase_info = {"name": pname, "steps": steps, "pairs": len(pairs), "history": hist, "best_step": best[2],
                          **({"stopped_at": step + 1} if stop else {})}
            ck.step(name, step + 1, last, lambda: {
                "config": config, "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                "phase": p + 1 if last else p, "info_phases": info["phases"] + ([phase_info] if last else []),
                "best_val": best[0], "best_state": best[1], "best_step": best[2], "history": hist,
                "base_trials": base_trials}, rng)
            if stop:
                log.info("%s:%s: no better validation score for %d evaluations; stopped at step %d of %d, "
                         "kept step %d", name, pname, stale, step + 1, steps, best[2])
                break
        info["phases"].append(phase_info)
    info["train_seconds"] = time.perf_counter() - t0
    net.eval()
    net.cpu()
    return info


@torch.no_grad()
def predict_trial(net: AmortizedNet, responses: np.ndarray, lag_min: int | None = None, chunk: int = 256) -> np.ndarray:
    """(N, T) activity -> (T, H, W) frames."""
    net.eval()
    lag = getattr(net, "lag_min", 0) if lag_min is None else lag_min
    # the ridge-based network fills bins outside the trial with the training mean, as ridge does
    fill = None
    if getattr(net, "fill_with_act_mean", False):
        from rtdecode.decode.ridge import raw_fill

        fill = raw_fill(net.act_mean[:, 0].cpu().numpy(), float(net.act_scale[0]) if hasattr(net, "act_scale") else 0.0)
    w = windows_of_trial(np.asarray(responses, np.float32), lag, net.bins, fill)
    dev = next(net.parameters()).device
    out = [net(torch.from_numpy(w[s : s + chunk]).to(dev)).cpu().numpy() for s in range(0, len(w), chunk)]
    return np.concatenate(out).astype(np.float32)


def net_arrays(net: AmortizedNet, prefix: str = "amortized.") -> dict[str, np.ndarray]:
    return {f"{prefix}{k}": v.detach().cpu().numpy() for k, v in net.state_dict().items()}


def net_from_arrays(arrays: dict, card: ModelCard, prefix: str = "amortized.") -> AmortizedNet:
    a = card.amortized
    if a is None:
        raise ModelError("card.json has no 'amortized' field (the network's k, hidden, dropout)")
    if a.get("kind") is not None:  # the kind's registry entry rebuilds it (rtdecode.decode.methods)
        if a["kind"] not in AMORTIZED_KINDS:
            raise ModelError(f"card.json amortized.kind '{a['kind']}' unknown; this rtdecode knows: "
                             f"{', '.join(AMORTIZED_KINDS)}")
        return methods.resolve(AMORTIZED_KINDS[a["kind"]].network)(arrays, card, prefix)
    # no kind: a v1 card of this stand-alone network
    net = AmortizedNet(card.neurons, card.window.bins, card.frame_shape,
                       AmortizedConfig(k=a["k"], hidden=a["hidden"], dropout=a["dropout"]))
    net.lag_min = card.window.lag_min
    load_module_arrays(net, arrays, prefix)
    return net

