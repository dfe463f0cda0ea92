"""The amortized decoder as ridge plus a learned residual: it starts as the ridge solution and can
only add to it.

    window (B, N, bins) -> compress (ridge.compress, when act_scale > 0) -> z-score -> temporal basis (bins -> nb, the ridge's) -> f (B, N*nb)
    linear    f @ w_in (N*nb, rank) @ w_out (rank, H*W) + pixel_mean          (the ridge decoder)
    residual  f -> Linear(N*nb, hidden) -> GELU -> Linear(hidden, hidden2) -> GELU
                -> Linear(hidden2, H*W), initialised at zero, times PIX_SCALE
    output    linear + residual, (B, H, W) in the 0-255 scale (not clamped, as ridge)

Training (`rtdecode.decode.pipeline`): the linear path is the ridge fitted on the fit trials alone
and frozen; the residual learns what ridge misses on (recorded + encoder-synthesised) pairs; the
step with the best validation score is kept, and step 0 (residual = 0, i.e. ridge) competes, so on
the validation trials the network is never below ridge; a trained step must also beat step 0 on the
validation trials together (its paired gain min_gain_z standard errors above zero), not on average
through a few of them. Then the linear path is swapped for the
ridge refitted on fit + validation trials (what `--method ridge` writes), and the residual kept.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from rtdecode.decode.encoder import PIX_SCALE
from rtdecode.decode.model import load_module_arrays
from rtdecode.errors import ModelError


@dataclass
class ResidualConfig:
    kind: str = "ridge_residual"
    hidden: int = 64
    hidden2: int = 256
    dropout: float = 0.1
    # Training stops after this many validations (every 200 steps) without beating the best one; on
    # the first realistic rig the network never beat ridge alone (step 0) in any run measured
    # (benchmarks/results/decoder_table_4000.json), so the remaining steps were time without a use.
    patience: int | None = 3
    # A trained step replaces ridge alone only if its validation gain, paired per trial, is this many
    # standard errors above zero (rtdecode.decode.amortized.train_amortized, min_gain_z).
    min_gain_z: float | None = 2.0


class RidgeResidualNet(nn.Module):
    """float32 (B, N, bins) raw activity, oldest bin first -> (B, H, W), 0-255 scale."""

    fill_with_act_mean = True  # whole-trial prediction pads as ridge does (rtdecode.decode.amortized)

    def __init__(self, n_neurons: int, bins: int, n_basis: int, rank: int, frame_shape=(36, 64),
                 cfg: ResidualConfig | None = None):
        super().__init__()
        cfg = cfg or ResidualConfig()
        self.cfg = cfg
        self.n_neurons, self.bins, self.frame_shape = n_neurons, bins, tuple(frame_shape)
        self.lag_min = 0
        H, W = frame_shape
        d = n_neurons * n_basis
        self.register_buffer("act_scale", torch.zeros(1))  # 0: no compression (rtdecode.decode.ridge.compress)
        self.compressed = False  # fixed per model, so the exported graph has no branch
        self.register_buffer("act_mean", torch.zeros(n_neurons, 1))
        self.register_buffer("act_std", torch.ones(n_neurons, 1))
        self.register_buffer("basis", torch.zeros(bins, n_basis))
        self.register_buffer("w_in", torch.zeros(d, rank))
        self.register_buffer("w_out", torch.zeros(rank, H * W))
        self.register_buffer("pixel_mean", torch.zeros(H * W))
        self.fc1 = nn.Linear(d, cfg.hidden)
        self.fc2 = nn.Linear(cfg.hidden, cfg.hidden2)
        self.fc3 = nn.Linear(cfg.hidden2, H * W)
        nn.init.zeros_(self.fc3.weight); nn.init.zeros_(self.fc3.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def set_linear(self, dec) -> None:
        """Copy a fitted `RidgeDecoder` (rank-truncated: `w_out` set) into the linear path."""
        copy_ridge(self, dec, "the residual decoder")
        self.lag_min = dec.lag_min

    @classmethod
    def from_ridge(cls, dec, cfg: ResidualConfig | None = None) -> "RidgeResidualNet":
        net = cls(len(dec.act_mean), dec.basis.shape[0], dec.basis.shape[1], dec.weights.shape[1],
                  dec.frame_shape, cfg)
        net.set_linear(dec)
        return net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.compressed:
            x = torch.log1p(torch.clamp(x, min=0.0) * (1.0 / self.act_scale))
        z = (x - self.act_mean) / self.act_std
        return torch.matmul(z, self.basis).flatten(1)  # (B, N*nb), neuron-major as the ridge's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = self.frame_shape
        f = self.features(x)
        lin = (f @ self.w_in) @ self.w_out + self.pixel_mean
        h = F.gelu(self.fc1(self.drop(f)))
        h = F.gelu(self.fc2(h))
        return (lin + self.fc3(self.drop(h)) * PIX_SCALE).view(-1, H, W)

    def macs_per_frame(self) -> int:
        d, k = self.w_in.shape
        hw = self.w_out.shape[1]
        c = self.cfg
        return self.n_neurons * self.bins * self.basis.shape[1] + d * k + k * hw + d * c.hidden \
            + c.hidden * c.hidden2 + c.hidden2 * hw


def copy_ridge(module: nn.Module, dec, what: str) -> None:
    """Copy a fitted, rank-truncated `RidgeDecoder` into a module's linear-path buffers (act_scale,
    act_mean, act_std, basis, w_in, w_out, pixel_mean) and set its `compressed` flag."""
    if dec.w_out is None:
        raise ModelError(f"{what} needs a rank-truncated ridge decoder (rank not None)")
    with torch.no_grad():
        for name, a in (("act_mean", dec.act_mean[:, None]), ("act_std", dec.act_std[:, None]),
                        ("basis", dec.basis), ("w_in", dec.weights), ("w_out", dec.w_out),
                        ("pixel_mean", dec.pixel_mean)):
            getattr(module, name).copy_(torch.from_numpy(np.asarray(a, np.float32)))
        module.act_scale.fill_(float(dec.act_scale))
    module.compressed = dec.act_scale > 0


def from_arrays(arrays: dict, card, prefix: str = "amortized.") -> RidgeResidualNet:
    """Rebuild from weights.npz arrays (card: rtdecode.decode.card.ModelCard), shapes checked against the card."""
    a = card.amortized
    n, bins = card.neurons, card.window.bins
    for key in ("basis", "w_in"):
        if prefix + key not in arrays:
            raise ModelError(f"weights.npz has no '{prefix}{key}'")
    nb = arrays[prefix + "basis"].shape[1]
    rank = arrays[prefix + "w_in"].shape[1]
    net = RidgeResidualNet(n, bins, nb, rank, tuple(card.frame_shape),
                           ResidualConfig(hidden=a["hidden"], hidden2=a["hidden2"], dropout=a["dropout"]))
    net.lag_min = card.window.lag_min
    if prefix + "act_scale" not in arrays:  # fitted before compression existed
        arrays = {**arrays, prefix + "act_scale": np.zeros(1, np.float32)}
    load_module_arrays(net, arrays, prefix)
    net.compressed = float(net.act_scale[0]) > 0
    return net
