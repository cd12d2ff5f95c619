"""Benchmark the grasp networks: parameters, forward and training-step time per network.

    python bench/nets.py [--batch-size 8] [--size 300] [--channels 1] [--repeats 3]
                         [--warmup 1] [--names ggcnn,resnet50] [--device cpu|cuda]

For each network (all of Table I unless --names) it reports the parameter count, the
median forward time (eval mode, inference mode) and the median training-step time
(forward + the paper's loss, the sum of four MSEs + backward + Adam step) over `--repeats`
runs after `--warmup` runs, on one fixed random batch at `size`². The networks are
interleaved within each repeat, so load from other processes spreads over all of them.
GG-CNN, the paper's baseline, is always measured in the same process and each row gives
its ratio to it.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from regrasp.learn import nets

BASELINE = "ggcnn"


def main() -> None:
    args = _parse_args()
    device = torch.device(args.device) if args.device else nets.default_device()
    names = args.names.split(",") if args.names else list(nets.NAMES)
    if BASELINE not in names:
        names.insert(0, BASELINE)
    print(
        f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}, "
        f"batch {args.batch_size}×{args.channels}×{args.size}², median of {args.repeats} "
        f"after {args.warmup} warm-up, networks interleaved in each repeat"
    )
    torch.manual_seed(0)
    x = torch.randn(args.batch_size, args.channels, args.size, args.size, device=device)
    targets = torch.rand(args.batch_size, 4, args.size, args.size, device=device)
    runs = {name: _Run(name, args.channels, device) for name in names}
    for run in runs.values():
        for _ in range(args.warmup):
            run.forward(x)
            run.step(x, targets)
    # Interleave the networks within each repeat, so load from other processes on a shared
    # machine spreads over all of them instead of skewing one network's ratio.
    for repeat in range(args.repeats):
        for run in runs.values():
            run.forward_ms.append(_timed_ms(lambda r=run: r.forward(x), device))
            run.step_ms.append(_timed_ms(lambda r=run: r.step(x, targets), device))
        print(f"  repeat {repeat + 1}/{args.repeats} done", flush=True)
    base = runs[BASELINE]
    base_forward, base_step = statistics.median(base.forward_ms), statistics.median(base.step_ms)
    header = (
        f"{'network':<20} {'params':>12} {'forward ms':>11} {'step ms':>10} "
        f"{'fwd ×ggcnn':>11} {'step ×ggcnn':>12}"
    )
    print(header)
    print("-" * len(header))
    for run in runs.values():
        forward, step = statistics.median(run.forward_ms), statistics.median(run.step_ms)
        print(
            f"{run.name:<20} {nets.count_parameters(run.model):>12,d} {forward:>11.1f} "
            f"{step:>10.1f} {forward / base_forward:>11.2f} {step / base_step:>12.2f}"
        )


class _Run:
    """One network, its optimiser and its timings."""

    def __init__(self, name: str, channels: int, device: torch.device) -> None:
        torch.manual_seed(0)
        self.name = name
        self.model = nets.build(name, channels).to(device)
        self.optimiser = torch.optim.Adam(self.model.parameters(), lr=5e-4)
        self.forward_ms: list[float] = []
        self.step_ms: list[float] = []

    def forward(self, x: torch.Tensor) -> None:
        self.model.eval()
        with torch.inference_mode():
            self.model(x)

    def step(self, x: torch.Tensor, targets: torch.Tensor) -> None:
        """Forward + the paper's loss (sum of four MSEs) + backward + Adam step."""
        self.model.train()
        self.optimiser.zero_grad(set_to_none=True)
        maps = self.model(x)
        losses = [nn.functional.mse_loss(m, targets[:, i : i + 1]) for i, m in enumerate(maps)]
        torch.stack(losses).sum().backward()
        self.optimiser.step()
        self.optimiser.zero_grad(set_to_none=True)  # free the gradients between networks


def _timed_ms(fn: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return (time.perf_counter() - start) * 1000


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=300, help="input height and width (px)")
    parser.add_argument("--channels", type=int, default=1, help="1 depth, 3 RGB, 4 RGB-D")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--names", default="", help="comma-separated subset of networks")
    parser.add_argument("--device", default="", help="default: cuda when available, else cpu")
    return parser.parse_args()


if __name__ == "__main__":
    main()
