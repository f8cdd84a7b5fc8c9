"""Which short training recipe reaches 99.0% MNIST test accuracy soonest? The search behind `--preset fast`.

    python benchmarks/recipes.py "batch_size=256 lr=0.01 epochs=4 max_shift=1" "batch_size=128 lr=0.008 epochs=4"

Each recipe is a set of Config overrides on top of `--preset fast`, trained from seeds 0, 1, 2 (or --first-seed on) with
`lenet.train.fit` (one process per run, one after another, so the timings do not disturb each
other). Test accuracy is measured after every epoch, outside the training seconds. Prints a markdown
table: per seed, the test accuracy of the last epoch and the first epoch at >= 99.0%, and the
mean training seconds per epoch. A recipe is only useful if every seed gets there.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its sibling benchmark.py
from benchmark import TARGET, run_in_subprocess  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import parse_override  # noqa: E402


def parse_recipe(text: str) -> dict:
    """'batch_size=256 lr=0.01' -> {'batch_size': 256, 'lr': 0.01}, typed as the Config fields are."""
    return dict(parse_override(item) for item in text.split())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="Config overrides, one quoted string per recipe")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one up (default: 0)")
    parser.add_argument("--runs-dir", default="runs", help="where the runs are written (default: runs)")
    args = parser.parse_args()
    return run_command(lambda: search(args))


def search(args: argparse.Namespace) -> int:
    """Train every recipe from each seed and print the table."""
    recipes = [parse_recipe(text) for text in args.recipes]
    print(f"| recipe (on top of --preset fast) | last-epoch test accuracy per seed | first epoch at >= "
          f"{TARGET:.1%} per seed | s / epoch |")
    print("|---|---|---|---|")
    for text, recipe in zip(args.recipes, recipes):
        seeds = range(args.first_seed, args.first_seed + args.seeds)
        runs = [run_in_subprocess("fast", seed, args.runs_dir, overrides=recipe) for seed in seeds]
        last = ", ".join(f"{run['history'][-1]['test_accuracy']:.2%}" for run in runs)
        first = ", ".join(str(run["epochs_to_target"] or "-") for run in runs)
        seconds = statistics.mean(run["seconds_per_epoch"] for run in runs)
        print(f"| `{text}` | {last} | {first} | {seconds:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
