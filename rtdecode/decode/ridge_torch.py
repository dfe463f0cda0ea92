"""The ridge decoder as a torch module, for ONNX export and the torch backend (imports torch).

It is exact: the same float32 operations as `RidgeDecoder.predict_window` (compression,
z-score, temporal basis, one matmul -- two when low-rank -- and the
pixel mean).
"""

from __future__ import annotations

import numpy as np
import torch


class RidgeModule(torch.nn.Module):
    """(1, N, bins) float32 window -> (1, H, W) frame, from a RidgeDecoder's arrays."""

    def __init__(self, d):
        super().__init__()

        def f32(a):
            return torch.from_numpy(np.ascontiguousarray(a, np.float32))

        self.register_buffer("act_mean", f32(d.act_mean).reshape(-1, 1))
        self.register_buffer("act_std", f32(d.act_std).reshape(-1, 1))
        self.register_buffer("basis", f32(d.basis))
        self.register_buffer("weights", f32(d.weights))
        self.low_rank = d.w_out is not None
        if self.low_rank:
            self.register_buffer("w_out", f32(d.w_out))
        self.register_buffer("pixel_mean", f32(d.pixel_mean))
        self.frame_shape = tuple(int(x) for x in d.frame_shape)
        self.act_scale = float(d.act_scale)  # fixed per model: 0 traces no compression

    def forward(self, window):
        if self.act_scale:
            window = torch.log1p(torch.clamp(window, min=0.0) * (1.0 / self.act_scale))
        z = (window - self.act_mean) / self.act_std            # (1, N, bins)
        feats = torch.matmul(z, self.basis).reshape(1, -1)     # (1, N * nb), neuron-major
        y = torch.matmul(feats, self.weights)
        if self.low_rank:
            y = torch.matmul(y, self.w_out)
        return (y + self.pixel_mean).reshape((1,) + self.frame_shape)


def ridge_module(decoder) -> RidgeModule:
    """The ridge decoder as an eval-mode torch module."""
    return RidgeModule(decoder).eval()
