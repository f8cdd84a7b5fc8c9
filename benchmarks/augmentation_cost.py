"""What does the default augmentation cost per training step? The default recipe's batches (shifts, rotation,
scale, shear, stroke thickness) against the same batches with shifts only, on the same model and optimizer,
interleaved in chunks so that a busy machine slows both alike.

    LENET_DATA_DIR=../shared/data python benchmarks/augmentation_cost.py [--chunks 15] [--steps 60]

Prints the median ratio of the time per chunk (augmented / shifts only) and its quartiles. The goal
(issue 11): the time per epoch grows by at most 15%.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from lenet.config import Config  # noqa: E402
from lenet.train import build_run  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=15, help="chunks of each kind (default: 15)")
    parser.add_argument("--steps", type=int, default=60, help="training steps per chunk (default: 60)")
    args = parser.parse_args(argv)
    _, splits, model, optimizer = build_run(Config())
    augmented = splits.train
    shifts_only = dataclasses.replace(augmented, augmentation=dataclasses.replace(
        augmented.augmentation, rotate=0.0, scale=0.0, shear=0.0, thicken=0.0, thin=0.0))

    def chunk(batches) -> float:
        batches.epoch += 1
        start = time.perf_counter()
        for images, labels in itertools.islice(batches, args.steps):
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        return time.perf_counter() - start

    chunk(augmented), chunk(shifts_only)  # warm-up
    ratios = [chunk(augmented) / chunk(shifts_only) for _ in range(args.chunks)]
    quartiles = statistics.quantiles(ratios, n=4)
    print(f"{torch.get_num_threads()} thread(s), batch {augmented.batch_size}: augmented / shifts-only time per step, "
          f"median {statistics.median(ratios):.3f} (quartiles {quartiles[0]:.3f}-{quartiles[2]:.3f}) "
          f"over {args.chunks} interleaved chunks of {args.steps} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
