"""The encoder readout's feature sum: einsum vs multiply-and-sum, forward + backward, at 4,000 neurons.

    python benchmarks/research/readout.py --json benchmarks/results/readout_bench.json

One thread, a (258 frames, 16 channels, 18x32) feature map (a training batch of 6 clips of 43
frames), bilinear sampling at 4,000 positions (the readout of `decode.encoder`). The two ways are
timed in interleaved repeats in this process; writes the median seconds of each and the ratio
einsum / multiply-and-sum (the encoder uses multiply-and-sum).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from research_common import RESULTS, machine_info, parser, positive_int, script_main, write_json

log = logging.getLogger(__name__)


def run(json_out, neurons: int = 4000, repeats: int = 7, seed: int = 0) -> dict:
    import torch
    import torch.nn.functional as F

    machine = machine_info(torch_threads=1)  # at the start: the tree as it was when the run began
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    BT, C, h, w, N = 258, 16, 18, 32, neurons
    fm = torch.randn(BT, C, h, w, generator=g, requires_grad=True)
    pos = (torch.rand(N, 2, generator=g) * 2 - 1).requires_grad_()
    feat = torch.randn(N, C, generator=g, requires_grad=True)

    def sample():
        grid = pos.view(1, 1, -1, 2).expand(BT, 1, -1, 2)
        return F.grid_sample(fm, grid, mode="bilinear", padding_mode="border", align_corners=True)[:, :, 0]

    ways = {"einsum": lambda: torch.einsum("bcn,nc->bn", sample(), feat),
            "multiply_and_sum": lambda: (sample() * feat.T).sum(1)}
    a, b = (f() for f in ways.values())
    max_abs_diff = float((a - b).abs().max().detach())
    times = {k: [] for k in ways}
    for _ in range(repeats):  # interleaved: a slow spell of a shared machine hits both
        for name, f in ways.items():
            t0 = time.perf_counter()
            f().sum().backward()
            times[name].append(time.perf_counter() - t0)
    med = {k: float(np.median(v)) for k, v in times.items()}
    out = {
        "machine": machine,
        "config": {"frames_x_batch": BT, "channels": C, "feature_map": [h, w], "neurons": N, "repeats": repeats},
        "seconds_forward_backward": {k: {"median": med[k], "all": [round(x, 4) for x in v]} for k, v in times.items()},
        "einsum_over_multiply_and_sum": med["einsum"] / med["multiply_and_sum"],
        "max_abs_diff": max_abs_diff,
    }
    write_json(json_out, out)
    return out


def main(argv=None, progress=False) -> int:
    p = parser("readout", __doc__)
    p.add_argument("--json", "--out", dest="out", default=str(RESULTS / "readout_bench.json"),
                   help="JSON file to write (default %(default)s)")
    p.add_argument("--neurons", type=positive_int, default=4000)
    p.add_argument("--repeats", type=positive_int, default=7)
    args = p.parse_args(argv)
    d = run(args.out, neurons=args.neurons, repeats=args.repeats)
    for k, v in d["seconds_forward_backward"].items():
        print(f"{k}: {v['median']:.3f} s forward + backward (median of {args.repeats})")
    print(f"einsum / multiply-and-sum: {d['einsum_over_multiply_and_sum']:.2f}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    script_main(main)
