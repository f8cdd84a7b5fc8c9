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
import dataclasses
import statistics
import sys

from benchmark import TARGET, run_in_subprocess
from lenet.config import Config


def parse_recipe(text: str) -> dict:
    """'batch_size=256 lr=0.01' -> {'batch_size': 256, 'lr': 0.01}, typed as the Config fields are."""
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    recipe = {}
    for item in text.split():
        key, _, value = item.partition("=")
        if key not in types or not value:
            sys.exit(f"error: {item!r} is not FIELD=VALUE with a Config field (e.g. batch_size=256).")
        parsers = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}
        kind = parsers.get(str(types[key]), str)
        try:
            recipe[key] = kind(value)
        except ValueError:
            sys.exit(f"error: {item!r}: {key} must be {'an integer' if str(types[key]) == 'int' else 'a number'}.")
    return recipe


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipes", nargs="+", help="Config overrides, one quoted string per recipe")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per recipe (default: 3)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds run from this one up (default: 0)")
    parser.add_argument("--runs-dir", default="runs", help="where the runs are written (default: runs)")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
