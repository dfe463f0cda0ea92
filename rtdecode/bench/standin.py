"""The benchmark's stand-in network (method `standin_mlp`): N*bins -> hidden (ReLU) -> H*W with random
weights, used to measure backends at the amortized decoder's size without training one.

Importing this module registers the method (rtdecode.decode.methods), so that the backends and the
ONNX export can load a stand-in model directory in the same process; `rtdecode fit` never makes one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtdecode.decode import methods
from rtdecode.decode import model as model_files
from rtdecode.decode.card import ModelCard
from rtdecode.errors import ModelError

STANDIN = "standin_mlp"


def standin_arrays(neurons: int, bins: int = 8, frame_shape=(36, 64), hidden: int = 512,
                   seed: int = 0) -> dict[str, np.ndarray]:
    """Random weights of the stand-in network (PyTorch's default init scale)."""
    rng = np.random.default_rng(seed)
    fan1, n_out = neurons * bins, int(frame_shape[0]) * int(frame_shape[1])
    u = lambda fan, shape: rng.uniform(-1, 1, shape).astype(np.float32) / np.float32(np.sqrt(fan))  # noqa: E731
    return {"w1": u(fan1, (fan1, hidden)), "b1": u(fan1, (hidden,)),
            "w2": u(hidden, (hidden, n_out)), "b2": u(hidden, (n_out,)) + np.float32(128)}


def write_standin_model(folder: str | Path, neurons: int, bins: int = 8, frame_shape=(36, 64),
                        hidden: int = 512, seed: int = 0) -> ModelCard:
    """A model directory holding the stand-in network; returns its card."""
    card = model_files.new_card(STANDIN, neurons, 0, bins, tuple(frame_shape), 30.0,
                                architecture={"layers": [neurons * bins, hidden, int(np.prod(frame_shape))],
                                              "activation": "relu", "seed": seed,
                                              "note": "stand-in with random weights, for backend work only"})
    model_files.save(folder, card, standin_arrays(neurons, bins, frame_shape, hidden, seed))
    return card


class StandInDecoder:
    """The stand-in network's weights: w1 (N*bins, hidden), b1 (hidden,), w2 (hidden, H*W), b2 (H*W,)."""

    def __init__(self, card: ModelCard, arrays: dict[str, np.ndarray]):
        (n, bins), (h, w) = card.in_shape, card.frame_shape
        expect = {"w1": (n * bins, None), "b1": (None,), "w2": (None, h * w), "b2": (h * w,)}
        for k, shape in expect.items():
            if k not in arrays:
                raise ModelError(f"weights.npz has no '{k}'")
            a = arrays[k]
            if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
                raise ModelError(f"weights.npz '{k}' has shape {a.shape}, the card implies {shape}")
        self.card = card
        self.w1, self.b1, self.w2, self.b2 = (np.asarray(arrays[k], np.float32) for k in ("w1", "b1", "w2", "b2"))

    @classmethod
    def from_arrays(cls, card: ModelCard, arrays: dict[str, np.ndarray]) -> "StandInDecoder":
        return cls(card, arrays)

    def predict_window(self, window: np.ndarray, out: np.ndarray) -> None:
        hidden = np.maximum(window.reshape(-1) @ self.w1 + self.b1, 0)
        out.reshape(-1)[:] = hidden @ self.w2 + self.b2

    def as_torch_module(self):
        """(1, N, bins) -> (1, H, W) torch module (imports torch)."""
        import torch

        (n, bins), (h, w) = self.card.in_shape, self.card.frame_shape
        hidden = self.w1.shape[1]
        arrays = {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}

        class StandInMLP(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.fc1 = torch.nn.Linear(n * bins, hidden)
                self.fc2 = torch.nn.Linear(hidden, h * w)
                with torch.no_grad():
                    self.fc1.weight.copy_(torch.from_numpy(arrays["w1"].T.copy()))
                    self.fc1.bias.copy_(torch.from_numpy(arrays["b1"]))
                    self.fc2.weight.copy_(torch.from_numpy(arrays["w2"].T.copy()))
                    self.fc2.bias.copy_(torch.from_numpy(arrays["b2"]))

            def forward(self, window):
                x = torch.relu(self.fc1(window.reshape(1, -1)))
                return self.fc2(x).reshape(1, h, w)

        return StandInMLP().eval()


methods.register(methods.Method(STANDIN, f"{__name__}:StandInDecoder", modes=(), fit=None,
                                help="benchmark stand-in: random-weight MLP"))
