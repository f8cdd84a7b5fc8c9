"""What do the drawn non-digits cost per training epoch? One epoch of `lenet.train.train_one_epoch` with the default
recipe's non-digits beside each batch (`Config.scribbles`, outlier exposure) against the same epoch of digits alone,
on the same model and optimizer, interleaved epoch by epoch so that a busy machine slows both alike.

    LENET_DATA_DIR=../shared/data python benchmarks/outlier_cost.py [--rounds 7]

Prints each epoch's seconds and the median ratio (with / without) with its range. The bank of non-digits is drawn
once before the first epoch (a few seconds, once per run) and augmented at the start of every epoch, inside the time
measured, as in `lenet-train`. The goal: the time per epoch grows by at most 20%.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.recipes import parse_recipe  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import Config  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.refusal import OutlierExposure  # noqa: E402
from lenet.train import build_run, train_one_epoch  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="epochs of each kind, interleaved (default: 7)")
    parser.add_argument("--recipe", default="", help="Config overrides, e.g. \"val_size=200 batch_size=32\" "
                                                     "(default: none, the default recipe)")
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)

    def body() -> int:
        if args.rounds < 1:
            raise LenetError(f"--rounds must be at least 1, got {args.rounds}.")
        config = replace(Config(**parse_recipe(args.recipe)), data_dir=args.data_dir)
        if not config.scribbles:
            raise LenetError("this recipe shows no non-digits (scribbles=0): there is nothing to measure.")
        _, splits, model, optimizer = build_run(config)
        outliers = OutlierExposure.for_run(config, splits)

        def epoch(with_outliers: bool) -> float:
            splits.train.epoch += 1
            start = time.perf_counter()
            train_one_epoch(model, splits.train, optimizer, extra=outliers if with_outliers else None)
            return time.perf_counter() - start

        epoch(True), epoch(False)  # warm-up
        seconds = [(epoch(True), epoch(False)) for _ in range(args.rounds)]
        ratios = [with_them / without for with_them, without in seconds]
        print(f"{torch.get_num_threads()} thread(s), batch {config.batch_size} digits + {config.scribbles} non-digits:")
        for index, (with_them, without) in enumerate(seconds, 1):
            print(f"  round {index}: {with_them:.2f} s with the non-digits, {without:.2f} s without")
        print(f"time per epoch with / without: median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-"
              f"{max(ratios):.3f}) over {args.rounds} interleaved rounds; median seconds "
              f"{statistics.median(s for s, _ in seconds):.2f} against {statistics.median(s for _, s in seconds):.2f}")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
