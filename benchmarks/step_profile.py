"""Where does a LeNet-5 training step spend its time? torch.profiler's table for the step `fit` takes.

    python benchmarks/step_profile.py                    # batch 256, channels-last, fused Adam
    python benchmarks/step_profile.py --batch-size 128 --no-channels-last

Random images (the data path is not part of the step), 20 warm-up steps, then `--steps` profiled
steps. Prints images/s over the profiled steps and the operators sorted by their own CPU time.
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from lenet.model import LeNet5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=256, help="images per step (default: 256)")
    parser.add_argument("--steps", type=int, default=50, help="profiled steps (default: 50)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="channels-last memory, as --preset fast (default: on)")
    parser.add_argument("--rows", type=int, default=12, help="operators to list (default: 12)")
    args = parser.parse_args()
    if args.batch_size < 1 or args.steps < 1:
        parser.error("--batch-size and --steps must be >= 1")

    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    model = LeNet5().to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    images = torch.randn(args.batch_size, 1, 28, 28).to(memory_format=memory_format)
    labels = torch.randint(0, 10, (args.batch_size,))

    def step() -> None:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(20):
        step()
    start = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.steps):
            step()
    seconds = time.perf_counter() - start
    print(f"batch {args.batch_size}, {'channels-last' if args.channels_last else 'NCHW'}, "
          f"{torch.get_num_threads()} threads: {args.steps * args.batch_size / seconds:,.0f} images/s while profiled")
    print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
