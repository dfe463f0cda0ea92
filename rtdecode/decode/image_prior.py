"""The amortized decoder as an image-space prior over linear reconstructions (`amortized` kind
`image_prior`).

    window (B, N, bins + back + fwd) raw activity, oldest bin first
      -> the ridge decoder (compress, z-score, temporal basis, rank-k weights) on each of the
         C = back + 1 + fwd sub-windows -> a clip of linear frames (B, C, H, W), frames f-back..f+fwd
      -> a small U-Net over the clip (two resolutions, `channels` wide), its last layer zero
      -> output = the clip's centre frame (frame f's linear reconstruction) + the U-Net's correction

So it starts as the linear decoder and can only add to it. The U-Net learns from out-of-fold pairs
(`rtdecode.decode.crossfit`): every calibration trial's linear reconstruction comes from a ridge
fitted without that trial, so the errors it learns to correct are the errors ridge makes on movies
it has not seen, not its smaller in-sample errors. The linear path that runs live is the ridge
fitted on every calibration trial. Training runs on precomputed linear clips (`train`), since the
linear path is frozen; the exported network recomputes them from the activity window in one pass.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtdecode.decode.model import load_module_arrays
from rtdecode.errors import ModelError

log = logging.getLogger(__name__)

PIX_CENTRE, PIX_SCALE = 128.0, 64.0  # linear frames are normalised (x - 128) / 64 inside the network


@dataclass
class ImagePriorConfig:
    kind: str = "image_prior"
    back: int = 4  # linear frames before the decoded one in the clip
    fwd: int = 4  # and after it (each adds a bin of delay to the live window)
    widths: tuple = (12, 32, 64)  # U-Net channels at full, 1/2 and 1/4 resolution
    folds: int = 5  # cross-fitting folds over the calibration trials
    # batches of training (600 x 32 = about one pass over 60 trials of 300 frames). With 2e-3 and 1,500
    # steps the U-Net lost to ridge on the rig's validation trials at every step (rig seed 0, 4,000
    # neurons: benchmarks/results/image_prior_rig_s0_4000_lr2e-3.json); 5e-4 and 600 steps gained
    # +0.028 on the independent simulator (image_prior_kit_s0_4000.json) and still lost on the rig's
    # validation, where ridge is kept (image_prior_rig_s0_1000.json)
    steps: int = 600
    eval_every: int = 100  # steps between validations
    batch: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    flip: bool = True  # horizontal flips of clip and target as augmentation
    # The trained network replaces the linear decoder only if its validation gain, paired per trial,
    # is this many standard errors above zero (rtdecode.decode.amortized.confident_gain) ...
    min_gain_z: float = 2.0
    # Pre-training on synthetic pairs (issue #24 item 3, rtdecode.decode.synthetic): `synth_movies`
    # procedural movies through the encoder and calibration-residual noise, `pretrain_steps` batches on
    # them before the calibration pairs. Off (0) by default: benchmarks/results/image_prior_synth.json.
    synth_movies: int = 0
    pretrain_steps: int = 0
    # ... and, with "halves_twice" (`gate_passes`), above zero on each half of the validation trials, at
    # this validation and at the one before it. "z" alone let one loss through (the rig's spike counts,
    # 4,000 units, seed 6: +0.012 on validation, -0.012 on the oracle trials); z 3 instead would have kept
    # weaker steps on v1_kit (seed 0 validates at z 2.4-3.2); halves and twice cost nothing on the probe's
    # rows (benchmarks/results/image_prior_variants.json, docs/decoders.md "amortized"). "z": the old rule.
    gate: str = "halves_twice"
    # Research options (issue #24), off: measured on 3 seeds of each simulator at 1,000 neurons (same JSON).
    # zero_mean: the correction's per-frame spatial mean removed, so it cannot change a frame's brightness.
    # On the rig it turns the loss on the oracle photographs into a gain (+0.013 to +0.019 at step 600)
    # but its validation still does not gain (the gate keeps ridge); on v1_kit it costs 0.02 (+0.006 / +0.026
    # against +0.028 / +0.044).
    zero_mean: bool = False
    loss: str = "mse"  # "mse" or "corr" (1 - Pearson over the batch's pixels x frames, the metric's shape)
    mask_loss: bool = False  # the loss over the evaluation mask's pixels only (when the dataset has one): no gain


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


class ClipUNet(nn.Module):
    """(B, C, H, W) normalised linear clip -> (B, 1, H, W) correction of its centre frame (zero at init).
    Three resolutions (full, 1/2, 1/4; H and W divisible by 4), `widths` channels each: thin at full
    resolution, where a channel costs the most, wide at a quarter, where the picture's shapes are."""

    def __init__(self, clip: int, widths: tuple[int, int, int]):
        super().__init__()
        c1, c2, c3 = widths
        self.e1 = _conv(clip, c1)
        self.down2, self.e2 = _conv(c1, c2, stride=2), _conv(c2, c2)
        self.down3, self.e3a, self.e3b = _conv(c2, c3, stride=2), _conv(c3, c3), _conv(c3, c3)
        self.up2, self.up1 = _conv(c3 + c2, c2), _conv(c2 + c1, c1)
        self.out = nn.Conv2d(c1, 1, 3, padding=1)
        nn.init.zeros_(self.out.weight); nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = F.gelu(self.e1(x))
        b = F.gelu(self.e2(F.gelu(self.down2(a))))
        c = F.gelu(self.down3(b))
        c = c + F.gelu(self.e3b(F.gelu(self.e3a(c))))
        b = F.gelu(self.up2(torch.cat([b, F.interpolate(c, scale_factor=2.0, mode="nearest")], 1)))
        a = F.gelu(self.up1(torch.cat([a, F.interpolate(b, scale_factor=2.0, mode="nearest")], 1)))
        return self.out(a)


class ImagePriorNet(nn.Module):
    """float32 (B, N, bins + back + fwd) raw activity, oldest bin first -> (B, H, W), 0-255 scale
    (not clamped, as ridge)."""

    fill_with_act_mean = True  # bins outside a trial hold the ridge's training mean (rtdecode.decode.amortized)

    def __init__(self, n_neurons: int, ridge_bins: int, n_basis: int, rank: int, frame_shape=(36, 64),
                 cfg: ImagePriorConfig | None = None):
        super().__init__()
        cfg = cfg or ImagePriorConfig()
        H, W = frame_shape
        if H % 4 or W % 4:
            raise ModelError(f"the image-prior decoder needs a frame size divisible by 4, got {H}x{W}")
        self.cfg = cfg
        self.n_neurons, self.ridge_bins, self.frame_shape = n_neurons, ridge_bins, (H, W)
        self.clip = cfg.back + 1 + cfg.fwd
        self.bins = ridge_bins + self.clip - 1
        self.lag_min = 0  # of the whole window; set from the ridge's lag_min - back
        d = n_neurons * n_basis
        self.register_buffer("act_scale", torch.zeros(1))
        self.compressed = False  # fixed per model, so the exported graph has no branch
        self.register_buffer("act_mean", torch.zeros(n_neurons, 1))
        self.register_buffer("act_std", torch.ones(n_neurons, 1))
        self.register_buffer("basis", torch.zeros(ridge_bins, n_basis))
        self.register_buffer("w_in", torch.zeros(d, rank))
        self.register_buffer("w_out", torch.zeros(rank, H * W))
        self.register_buffer("pixel_mean", torch.zeros(H * W))
        self.unet = ClipUNet(self.clip, tuple(cfg.widths))

    def set_linear(self, dec) -> None:
        """Copy a fitted, rank-truncated `RidgeDecoder` into the linear path."""
        from rtdecode.decode.residual import copy_ridge

        copy_ridge(self, dec, "the image-prior decoder")
        self.lag_min = dec.lag_min - self.cfg.back

    def linear_clip(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, bins) raw window -> (B, C, H, W) linear frames f-back .. f+fwd (0-255)."""
        H, W = self.frame_shape
        if self.compressed:
            x = torch.log1p(torch.clamp(x, min=0.0) * (1.0 / self.act_scale))
        z = (x - self.act_mean) / self.act_std
        feats = torch.stack([torch.matmul(z[:, :, c:c + self.ridge_bins], self.basis).flatten(1)
                             for c in range(self.clip)], 1)  # (B, C, N*nb), neuron-major as the ridge's
        lin = torch.matmul(torch.matmul(feats, self.w_in), self.w_out) + self.pixel_mean
        return lin.view(-1, self.clip, H, W)

    def refine(self, clip: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) linear clip in 0-255 -> (B, H, W): its centre frame plus the learned correction."""
        corr = self.unet((clip - PIX_CENTRE) * (1.0 / PIX_SCALE))[:, 0]
        if self.cfg.zero_mean:
            corr = corr - corr.mean(dim=(-2, -1), keepdim=True)
        return clip[:, self.cfg.back] + corr * PIX_SCALE

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.refine(self.linear_clip(x))

    def macs_per_frame(self) -> int:
        H, W = self.frame_shape
        d, k = self.w_in.shape
        c1, c2, c3 = self.cfg.widths
        f, h, q = H * W, H * W // 4, H * W // 16
        conv = 9 * (f * (self.clip * c1 + (c2 + c1) * c1 + c1) + h * (c1 * c2 + c2 * c2 + (c3 + c2) * c2)
                    + q * (c2 * c3 + 2 * c3 * c3))
        return self.clip * (self.n_neurons * self.ridge_bins * self.basis.shape[1] + d * k + k * H * W) + conv


FOLD_KEYS = ("amortized.fold_w_in", "amortized.fold_w_out")  # (K, N*nb, rank), (K, rank, H*W)


def fold_arrays(decoders: list) -> dict[str, np.ndarray]:
    """weights.npz arrays of the K cross-fitting fold decoders (rank-truncated ridges sharing the live
    decoder's normalisation and basis): the ensemble whose spread `spread` reports. {} when a fold
    decoder is not rank-truncated."""
    if not decoders or any(d.w_out is None for d in decoders):
        return {}
    return {FOLD_KEYS[0]: np.stack([d.weights for d in decoders]).astype(np.float32),
            FOLD_KEYS[1]: np.stack([d.w_out for d in decoders]).astype(np.float32)}


@torch.no_grad()
def spread(net: "ImagePriorNet", fold_w_in: np.ndarray, fold_w_out: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """(B, N, bins) raw windows -> (B, H, W) per-pixel uncertainty, 0-255 scale: the standard deviation
    over the K fold decoders' linear frames (each fitted without a fifth of the calibration trials;
    the spread is how much the decoded pixel depends on which trials the decoder saw; unbiased, ddof 1)."""
    x = torch.from_numpy(np.asarray(windows, np.float32))
    if net.compressed:
        x = torch.log1p(torch.clamp(x, min=0.0) * (1.0 / net.act_scale))
    b = net.cfg.back
    z = ((x - net.act_mean) / net.act_std)[:, :, b:b + net.ridge_bins]
    f = torch.matmul(z, net.basis).flatten(1)  # (B, N*nb)
    frames = torch.stack([(f @ torch.from_numpy(wi)) @ torch.from_numpy(wo) for wi, wo in zip(fold_w_in, fold_w_out)])
    return frames.std(0).view(-1, *net.frame_shape).numpy()


def linear_frames(dec, responses: np.ndarray, back: int, fwd: int) -> np.ndarray:
    """(N, T) activity -> (back + T + fwd, H, W): the ridge decoder's frames -back .. T-1+fwd, where
    frames outside the trial see bins outside it as the training mean (exactly what the network's
    window sees there)."""
    from rtdecode.decode.ridge import raw_fill

    fill = raw_fill(dec.act_mean, dec.act_scale)[:, None]
    padded = np.concatenate([np.repeat(fill, back, 1), np.asarray(responses, np.float32),
                             np.repeat(fill, fwd, 1)], 1)
    return dec.predict_trial(padded).astype(np.float32)


def clips(frames: np.ndarray, back: int, fwd: int) -> np.ndarray:
    """(back + T + fwd, H, W) linear frames -> (T, C, H, W) clips, frame t's at index t."""
    T = frames.shape[0] - back - fwd
    idx = np.arange(T)[:, None] + np.arange(back + 1 + fwd)[None, :]
    return frames[idx]


LOSSES = ("mse", "corr")


def loss_of(pred: torch.Tensor, target: torch.Tensor, loss: str = "mse", mask: torch.Tensor | None = None):
    """(B, H, W) refined frames against the true ones, 0-255: "mse" (in the network's units, / 64^2) or
    "corr" (1 - the Pearson correlation over the batch's pixels x frames); over `mask`'s pixels only
    when given (bool (H, W))."""
    if loss not in LOSSES:
        raise ModelError(f"image prior: unknown loss {loss!r} ({', '.join(LOSSES)})")
    if mask is not None:
        pred, target = pred[:, mask], target[:, mask]
    if loss == "corr":
        p, y = pred - pred.mean(), target - target.mean()
        return 1.0 - (p * y).sum() / torch.sqrt((p * p).sum() * (y * y).sum() + 1e-12)
    return F.mse_loss(pred, target) / PIX_SCALE ** 2


GATES = ("z", "halves", "twice", "halves_twice")


def gate_passes(gains, prev_gains, gate: str, z: float) -> bool:
    """Whether a validation's per-trial gains over the linear decoder (`gains`; `prev_gains`: the
    previous validation's, None at the first) let its step replace the linear decoder. "z": the mean
    gain more than `z` standard errors above zero (rtdecode.decode.amortized.confident_gain);
    "halves": that, and the mean gain above zero on each half of the validation trials (first and
    second half, in order); "twice": "z" at this validation and at the one before it; "halves_twice":
    both."""
    from rtdecode.decode.amortized import confident_gain

    if gate not in GATES:
        raise ModelError(f"image prior: unknown gate {gate!r} ({', '.join(GATES)})")

    def one(g):
        g = np.asarray(g, np.float64)
        ok = confident_gain(g, np.zeros_like(g), z)[2]
        if gate in ("halves", "halves_twice"):
            h = len(g) // 2
            ok = ok and h > 0 and bool(g[:h].mean() > 0) and bool(g[h:].mean() > 0)
        return ok

    if not one(gains):
        return False
    if gate in ("twice", "halves_twice"):
        return prev_gains is not None and one(prev_gains)
    return True


def pretrain(net, pairs: list, steps: int, *, seed: int = 0, say=None) -> dict:
    """Train `net.unet` in place on synthetic pairs (rtdecode.decode.synthetic.synth_pairs) for `steps`
    batches: the same loss, batch, learning-rate schedule (AdamW, one cycle), weight decay and flips
    as `image_prior.train`'s training on the calibration pairs. Returns info (train loss, seconds)."""
    cfg, say = net.cfg, say or (lambda s: log.info("image prior: %s", s))
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 2404])
    frames = torch.from_numpy(np.concatenate([np.asarray(f, np.float32) for f, _ in pairs]))
    Y = torch.from_numpy(np.concatenate([np.asarray(v, np.float32) for _, v in pairs]))
    offsets = np.cumsum([0] + [len(f) for f, _ in pairs[:-1]])
    start = torch.from_numpy(np.concatenate([o + np.arange(len(v)) for o, (_, v) in zip(offsets, pairs)]))
    span = torch.arange(net.clip)
    opt = torch.optim.AdamW(net.unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(steps, 1), pct_start=0.1)
    net.train()
    losses = []
    for step in range(1, steps + 1):
        idx = torch.from_numpy(rng.integers(0, len(Y), cfg.batch))
        x, y = frames[start[idx][:, None] + span], Y[idx]
        if cfg.flip and rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = loss_of(net.refine(x), y, cfg.loss)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(); sched.step()
        losses.append(float(loss.detach()))
        if step % max(cfg.eval_every, 1) == 0 or step == steps:
            say(f"pre-training step {step}/{steps}: train loss {np.mean(losses[-cfg.eval_every:]):.4f}")
    net.eval()
    return {"pretrain_steps": steps, "pretrain_pairs": int(len(Y)), "pretrain_movies": len(pairs),
            "pretrain_loss_last": float(np.mean(losses[-max(cfg.eval_every, 1):])) if losses else None,
            "pretrain_seconds": time.perf_counter() - t0}


def train(net: ImagePriorNet, train_pairs: list, val_pairs: list, *, seed: int = 0, progress: bool = False,
          val_mask: np.ndarray | None = None, say=None, pretrain_pairs: list | None = None, on_eval=None) -> dict:
    """Train `net.unet` in place. `train_pairs` / `val_pairs`: lists of (linear frames
    (back + T + fwd, H, W) from `linear_frames`, true video (T, H, W)), the linear frames out of
    fold. Every `cfg.eval_every` steps the validation trials are scored (pixel_corr, DESIGN 3.3, over
    `val_mask`) against step 0 (the linear decoder itself); a step replaces the best only if its
    per-trial gain over step 0 is `cfg.min_gain_z` standard errors above zero. Returns info; the
    best step is kept (step 0: the network stays the linear decoder). `pretrain_pairs` (synthetic
    pairs, rtdecode.decode.synthetic) with `cfg.pretrain_steps` > 0: the U-Net is first trained on
    them (`pretrain`), validated as a candidate of its own (history step 'pretrained',
    kept as info['kept'] 'pretrained', best_step 0, if it wins), then trained as above. `on_eval(step, net)` (experiments): called at step 0
    and after every validation; a dict it returns is added to that step's history."""
    from tqdm import tqdm

    from rtdecode import metrics
    from rtdecode.decode.amortized import confident_gain

    cfg, say = net.cfg, say or (lambda s: log.info("image prior: %s", s))
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    # the padded linear frames of every trial end to end; sample j's clip is frames[start[j] : start[j] + C]
    frames = torch.from_numpy(np.concatenate([np.asarray(f, np.float32) for f, _ in train_pairs]))
    Y = torch.from_numpy(np.concatenate([np.asarray(v, np.float32) for _, v in train_pairs]))
    offsets = np.cumsum([0] + [len(f) for f, _ in train_pairs[:-1]])
    start = torch.from_numpy(np.concatenate([o + np.arange(len(v)) for o, (_, v) in zip(offsets, train_pairs)]))
    span = torch.arange(net.clip)
    vclips = [torch.from_numpy(clips(f, cfg.back, cfg.fwd)) for f, _ in val_pairs]

    @torch.no_grad()
    def val_scores():
        net.eval()
        preds = [(torch.cat([net.refine(c[s:s + 256]) for s in range(0, len(c), 256)]).numpy(), v)
                 for c, (_, v) in zip(vclips, val_pairs)]
        sc = metrics.score(preds, val_mask)
        return sc["pixel_corr"], [t["pixel_corr"] for t in sc["per_trial"]]

    if cfg.loss not in LOSSES or cfg.gate not in GATES:
        raise ModelError(f"image prior: loss {cfg.loss!r} (one of {', '.join(LOSSES)}), gate {cfg.gate!r} "
                         f"(one of {', '.join(GATES)})")
    lmask = torch.from_numpy(np.asarray(val_mask, bool)) if cfg.mask_loss and val_mask is not None else None
    opt = torch.optim.AdamW(net.unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=max(cfg.steps, 1), pct_start=0.1)
    base, base_trials = val_scores()
    best = (base, {k: v.detach().clone() for k, v in net.unet.state_dict().items()}, 0)
    history = [{"step": 0, "val_pixel_corr": base}]
    if on_eval is not None:
        history[0].update(on_eval(0, net) or {})
        net.train()
    say(f"linear decoder (step 0): validation pixel_corr {base:.4f}")
    pre_info, kept = {}, "linear"
    if pretrain_pairs and cfg.pretrain_steps > 0:  # issue #24 item 3 (rtdecode.decode.synthetic)
        pre_info = pretrain(net, pretrain_pairs, cfg.pretrain_steps, seed=seed, say=say)
        s, per = val_scores()
        gain, se, _ = confident_gain(per, base_trials, cfg.min_gain_z)
        gains = [float(a - b) for a, b in zip(per, base_trials)]
        # one candidate, one validation: the gate's repeat condition ("twice") has no earlier one to ask
        ok = gate_passes(gains, gains, cfg.gate, cfg.min_gain_z)
        history.append({"step": "pretrained", "val_pixel_corr": s, "gain_over_linear": gain, "gain_se": se,
                        "confident": ok, "val_trial_gains": gains})
        say(f"pre-trained: validation pixel_corr {s:.4f} (gain {gain:+.4f} +- {se:.4f} over linear)")
        if s > best[0] and ok:
            best, kept = (s, {k: v.detach().clone() for k, v in net.unet.state_dict().items()}, 0), "pretrained"
    total, n, prev = 0.0, 0, None
    net.train()
    for step in tqdm(range(1, cfg.steps + 1), desc="image prior", unit="step", disable=not progress, leave=False):
        idx = torch.from_numpy(rng.integers(0, len(Y), cfg.batch))
        x, y = frames[start[idx][:, None] + span], Y[idx]
        if cfg.flip and rng.random() < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        loss = loss_of(net.refine(x), y, cfg.loss, lmask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step(); sched.step()
        total, n = total + float(loss.detach()), n + 1
        if step % cfg.eval_every == 0 or step == cfg.steps:
            s, per = val_scores()
            net.train()
            gain, se, _ = confident_gain(per, base_trials, cfg.min_gain_z)
            gains = [float(a - b) for a, b in zip(per, base_trials)]
            ok = gate_passes(gains, prev, cfg.gate, cfg.min_gain_z)
            prev = gains
            history.append({"step": step, "train_loss": total / n, "val_pixel_corr": s,
                            "gain_over_linear": gain, "gain_se": se, "confident": ok,
                            "val_trial_gains": gains})
            if on_eval is not None:
                history[-1].update(on_eval(step, net) or {})
                net.train()
            say(f"step {step}: train loss {total / n:.4f}, validation pixel_corr {s:.4f} "
                f"(gain {gain:+.4f} +- {se:.4f} over linear)")
            total, n = 0.0, 0
            if s > best[0] and ok:
                best = (s, {k: v.detach().clone() for k, v in net.unet.state_dict().items()}, step)
                kept = "finetuned" if pre_info else "trained"
    net.unet.load_state_dict(best[1])
    net.eval()
    return {"history": history, "best_step": best[2], "val_pixel_corr_linear": base, "val_pixel_corr": best[0],
            "train_pairs": int(len(Y)), "train_seconds": time.perf_counter() - t0, "config": asdict(cfg),
            "macs_per_frame": net.macs_per_frame(), "kept": kept, **pre_info}


def from_arrays(arrays: dict, card, prefix: str = "amortized.") -> ImagePriorNet:
    """Rebuild from weights.npz arrays, every shape checked against the card's `amortized` block."""
    a = dict(card.amortized)
    fields = ImagePriorConfig.__dataclass_fields__
    unknown = [k for k in a if k not in fields]
    if unknown:
        raise ModelError(f"card.json amortized: unknown setting(s) {', '.join(unknown)} for kind 'image_prior'")
    cfg = ImagePriorConfig(**{**a, "widths": tuple(a.get("widths", ImagePriorConfig.widths))})
    for key in ("basis", "w_in"):
        if prefix + key not in arrays:
            raise ModelError(f"weights.npz has no '{prefix}{key}'")
    ridge_bins, nb = arrays[prefix + "basis"].shape
    if ridge_bins + cfg.back + cfg.fwd != card.window.bins:
        raise ModelError(f"weights.npz '{prefix}basis' covers {ridge_bins} bins; with the clip ({cfg.back} back, "
                         f"{cfg.fwd} forward) the card's window should have {ridge_bins + cfg.back + cfg.fwd}, "
                         f"it has {card.window.bins}")
    net = ImagePriorNet(card.neurons, ridge_bins, nb, arrays[prefix + "w_in"].shape[1], tuple(card.frame_shape), cfg)
    load_module_arrays(net, arrays, prefix)
    net.compressed = float(net.act_scale[0]) > 0
    net.lag_min = card.window.lag_min
    return net
