"""Refusing what is not a digit, measured as a user meets it: `lenet-train` with and without scribbles, then
`lenet-predict`'s answers on drawn non-digits and on people's real digits.

A softmax over ten digits always names one of them. Every run here is `lenet.train.fit` with the recipe's defaults
and `--scribbles N` pen scribbles beside each training batch (outlier exposure, Hendrycks et al., 2019;
`lenet.outliers`; N = 0 is the plain recipe). `fit` fits the temperature and the refusal threshold (the evidence
logsumexp(logits / T) that keeps 99% of validation digits, Liu et al., 2020) and stores both in best.pt. The
images are then read exactly as `lenet-predict --json` reads them (`lenet.inference.predict.predict`), and each
answer is one of: a digit, "unsure", "not a digit".

    python benchmarks/outlier_exposure.py --non-digits ../shared/data/not_digits_dev \
        --digits ../shared/data/real_digits_dev --seeds 0 1 2 --scribbles 0 16

Prints one row per (scribbles per batch, seed) and the mean of each setting: MNIST test accuracy, median seconds
per epoch, the non-digits answered "not a digit" (and those answered anything but a digit: "not a digit" or
"unsure", the share the unsure rule alone gave before), and the real digits read right. `--save FILE` writes every
image's evidence and answer as JSON, for the trade-off curve (`notebooks/09_not_a_digit.ipynb` draws the same).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.recipes import parse_recipe  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import Config  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.files import require_regular_file, write_json  # noqa: E402
from lenet.inference.images import image_files_in  # noqa: E402
from lenet.inference.predict import DIGIT, NOT_A_DIGIT, Predictor, classify, load_model, prepare  # noqa: E402
from lenet.inference.preprocess import PreprocessError  # noqa: E402
from lenet.runs import BEST, checkpoint_path  # noqa: E402
from lenet.train import fit  # noqa: E402


def answers(predictor: Predictor, files: list[Path]) -> list[dict]:
    """`lenet-predict --json`'s answer for each file: its outcome, digit and evidence (an image preprocessing
    refuses, such as a blank one, counts as "not a digit")."""
    ready, refused = [], []
    for path in files:
        try:
            ready.append((path, prepare(path, predictor)))
        except PreprocessError:
            refused.append(path)
    results = [{"file": path.name, "outcome": p.outcome, "prediction": p.label, "evidence": round(p.evidence, 4)}
               for (path, _), p in zip(ready, classify(predictor, [item for _, item in ready]))]
    return results + [{"file": path.name, "outcome": NOT_A_DIGIT, "prediction": None, "evidence": None}
                      for path in refused]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--non-digits", type=Path, required=True, help="a folder of images that are not digits")
    parser.add_argument("--digits", type=Path, required=True, help="a folder of real digits with a labels.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--scribbles", type=int, nargs="+", default=[0, 16],
                        help="scribbles per training batch, one run per value and seed (default: 0 16)")
    parser.add_argument("--epochs", type=int, default=Config.epochs, help="maximum epochs (default: the recipe's)")
    parser.add_argument("--recipe", default="", help="other Config overrides, e.g. \"val_size=200 batch_size=32\" "
                                                     "(default: none)")
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    parser.add_argument("--save", type=Path, default=None, help="write every answer and evidence to this JSON file")
    args = parser.parse_args(argv)

    def body() -> int:
        labels_file = require_regular_file(args.digits / "labels.json", "labels file",
                                           "pass a folder with a labels.json")
        labels = json.loads(labels_file.read_text(encoding="utf-8"))
        digits = [path for path in image_files_in(args.digits) if path.name in labels]
        others = image_files_in(args.non_digits)
        if not digits or not others:
            raise LenetError("both folders must hold images: pass --digits and --non-digits folders of images.")
        print("| scribbles/batch | seed | MNIST test | s/epoch | non-digits: not a digit | non-digits: no digit claimed "
              "| real digits read right |\n|---|---|---|---|---|---|---|", flush=True)
        saved, rows = [], {}
        with tempfile.TemporaryDirectory() as runs_dir:
            for per_batch in args.scribbles:
                for seed in args.seeds:
                    config = Config(**{**parse_recipe(args.recipe), "seed": seed, "epochs": args.epochs,
                                       "data_dir": args.data_dir, "scribbles": per_batch, "runs_dir": runs_dir,
                                       "run_name": f"scribbles{per_batch}-seed{seed}"})
                    result = fit(config, verbose=False)
                    predictor = load_model(checkpoint_path(Path(result["run_dir"]), BEST))
                    on_others, on_digits = answers(predictor, others), answers(predictor, digits)
                    refused = sum(a["outcome"] == NOT_A_DIGIT for a in on_others) / len(on_others)
                    unclaimed = sum(a["outcome"] != DIGIT for a in on_others) / len(on_others)
                    right = sum(a["prediction"] == labels[a["file"]] for a in on_digits)
                    seconds = statistics.median(record["seconds"] for record in result["history"])
                    row = (result["test_accuracy"], seconds, refused, unclaimed, right / len(on_digits))
                    rows.setdefault(per_batch, []).append(row)
                    print(f"| {per_batch} | {seed} | {row[0]:.2%} | {seconds:.2f} | {refused:.1%} | {unclaimed:.1%} "
                          f"| {right}/{len(on_digits)} ({row[4]:.1%}) |", flush=True)
                    saved.append({"scribbles": per_batch, "seed": seed, "test_accuracy": result["test_accuracy"],
                                  "seconds_per_epoch": seconds, "refuse_below": result["refuse_below"],
                                  "temperature": result["temperature"], "non_digits": on_others,
                                  "digits": [{**a, "label": labels[a["file"]]} for a in on_digits]})
        for per_batch, values in rows.items():
            mean = [statistics.fmean(column) for column in zip(*values)]
            print(f"| {per_batch} | mean of {len(values)} | {mean[0]:.2%} | {mean[1]:.2f} | {mean[2]:.1%} "
                  f"| {mean[3]:.1%} | {mean[4]:.1%} |")
        if args.save is not None:
            write_json(args.save, saved)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
