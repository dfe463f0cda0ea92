"""The encoder readout's feature sum: einsum vs multiply-and-sum, forward + backward, at 4,000 neurons.

    python tools/x_readout_bench.py

One thread, a (258 frames, 16 channels, 18x32) feature map (a training batch of 6 clips of 43
frames), bilinear sampling at 4,000 positions; prints the median seconds of 5 repeats each.
"""

import time

import torch
import torch.nn.functional as F


def main():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    BT, C, h, w, N = 258, 16, 18, 32, 4000
    fm = torch.randn(BT, C, h, w, generator=g, requires_grad=True)
    pos = (torch.rand(N, 2, generator=g) * 2 - 1).requires_grad_()
    feat = torch.randn(N, C, generator=g, requires_grad=True)

    def sample():
        grid = pos.view(1, 1, -1, 2).expand(BT, 1, -1, 2)
        return F.grid_sample(fm, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]

    ways = {"einsum": lambda: torch.einsum("bcn,nc->bn", sample(), feat),
            "multiply-and-sum": lambda: (sample() * feat.T).sum(1)}
    a, b = (f() for f in ways.values())
    assert torch.allclose(a, b, atol=1e-4)
    for name, f in ways.items():
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            f().sum().backward()
            times.append(time.perf_counter() - t0)
        print(f"{name}: {sorted(times)[2]:.3f} s forward + backward")


if __name__ == "__main__":
    main()
