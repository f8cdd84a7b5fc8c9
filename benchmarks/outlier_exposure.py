"""Refusing what is not a digit, measured as a user meets it: `lenet-train` with and without outlier exposure, then
`lenet-predict`'s answers on drawn non-digits and on people's real digits, with three detectors.

A softmax over ten digits always names one of them. Every run here is `lenet.train.fit` with the recipe's defaults
and `--scribbles N` drawn non-digits (scribbles and stick characters, `lenet.refusal`) beside each training batch
(outlier exposure, Hendrycks et al., 2019; N = 16 is the default recipe, N = 0 trains on digits alone). `fit` fits
the temperature and the two refusal thresholds and stores them in best.pt with the features of 10,000 training
digits. Each run is then read three ways, and each answer is one of: a digit, "unsure", "not a digit".
- both: exactly as `lenet-predict --json` reads (`lenet.inference.predict.classify`): "not a digit" when the image's
  familiarity (the similarity of its features to the training digits', Sun et al., 2022) or its evidence (the
  energy logsumexp(logits / T), Liu et al., 2020) is under the stored thresholds, which together keep 99% of the
  validation digits.
- familiarity, evidence: one score alone, its threshold fitted here the same way on the same validation digits.

    python benchmarks/outlier_exposure.py --non-digits ../shared/data/not_digits_dev \
        --digits ../shared/data/real_digits_dev --seeds 0 1 2 --scribbles 0 16

Prints one row per (non-digits per batch, detector, seed) and the mean of each setting: MNIST test accuracy, median
seconds per epoch, the non-digits answered "not a digit" (and those answered anything but a digit: "not a digit" or
"unsure"), and the real digits read right. `--save FILE` writes every image's scores and answers as JSON, for the
trade-off curve (`notebooks/10_not_a_digit.ipynb` draws the same). `--digit-like FILE` names the non-digits that are
drawn exactly like a digit (one file name a line; `benchmarks/digit_like_dev.txt` lists those of the development
set, judged by eye) and adds a column: the non-digits refused among the others, which a detector can refuse without
refusing what a person would read as a digit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.recipes import parse_recipe  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import Config  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.files import require_regular_file, write_json  # noqa: E402
from lenet.inference.images import image_files_in  # noqa: E402
from lenet.data import load_splits  # noqa: E402
from lenet.inference.predict import (DIGIT, NOT_A_DIGIT, UNSURE, UNSURE_BELOW, Predictor, classify,  # noqa: E402
                                     load_model, prepare_image)
from lenet.evaluate import predict_logits  # noqa: E402
from lenet.refusal.rule import evidence, image_familiarity, threshold  # noqa: E402
from lenet.inference.preprocess import PreprocessError  # noqa: E402
from lenet.runs import BEST, checkpoint_path  # noqa: E402
from lenet.train import fit  # noqa: E402


DETECTORS = ("both", "familiarity", "evidence")


def digit_like_names(path: Path, others: list[Path]) -> set[str]:
    """The file names listed in `path` (one a line; blank lines and lines starting with # are skipped), which must
    name at least one of the images `others`."""
    listed = {line.strip() for line in require_regular_file(path, "list of digit-like non-digits", "pass a text file "
                                                            "of file names, one a line").read_text(encoding="utf-8")
              .splitlines() if line.strip() and not line.lstrip().startswith("#")}
    if not listed & {other.name for other in others}:
        raise LenetError(f"none of the {len(listed)} names in {path} is an image of the --non-digits folder: "
                         "pass the list made for that folder.")
    return listed


def read_folders(digits_folder: Path, non_digits_folder: Path) -> tuple[dict[str, int], list[Path], list[Path]]:
    """(labels, the labelled digit images, the non-digit images) of a folder of real digits with a labels.json and a
    folder of non-digits; a missing labels file or an empty folder is one sentence."""
    labels_file = require_regular_file(digits_folder / "labels.json", "labels file", "pass a folder with a labels.json")
    labels = json.loads(labels_file.read_text(encoding="utf-8"))
    digits = [path for path in image_files_in(digits_folder) if path.name in labels]
    others = image_files_in(non_digits_folder)
    if not digits or not others:
        raise LenetError("both folders must hold images: pass --digits and --non-digits folders of images.")
    return labels, digits, others


def answers(predictor: Predictor, files: list[Path], alone: dict[str, float]) -> list[dict]:
    """Each file's answer by each detector: `lenet-predict --json`'s (both stored thresholds) and those that refuse
    under one score's threshold `alone[score]`, with both scores (an image preprocessing refuses, such as a blank
    one, is "not a digit" to all)."""
    ready, refused = [], []
    for path in files:
        try:
            ready.append((path, prepare_image(path, predictor)))
        except PreprocessError:
            refused.append(path)
    results = []
    for (path, _), p in zip(ready, classify(predictor, [item for _, item in ready])):
        said = {"both": p.outcome}
        for score in ("familiarity", "evidence"):
            said[score] = (NOT_A_DIGIT if getattr(p, score) < alone[score]
                           else UNSURE if p.probability < UNSURE_BELOW else DIGIT)
        results.append({"file": path.name, "familiarity": round(p.familiarity, 4), "evidence": round(p.evidence, 4),
                        "answers": {detector: {"outcome": outcome, "prediction": p.top(1)[0][0]
                                               if outcome == DIGIT else None} for detector, outcome in said.items()}})
    refusal = {"outcome": NOT_A_DIGIT, "prediction": None}
    return results + [{"file": path.name, "familiarity": None, "evidence": None,
                       "answers": {detector: refusal for detector in DETECTORS}} for path in refused]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--non-digits", type=Path, required=True, help="a folder of images that are not digits")
    parser.add_argument("--digits", type=Path, required=True, help="a folder of real digits with a labels.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--scribbles", type=int, nargs="+", default=[0, 16],
                        help="drawn non-digits per training batch, one run per value and seed (default: 0 16)")
    parser.add_argument("--epochs", type=int, default=Config.epochs, help="maximum epochs (default: the recipe's)")
    parser.add_argument("--recipe", default="", help="other Config overrides, e.g. \"val_size=200 batch_size=32\" "
                                                     "(default: none)")
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    parser.add_argument("--digit-like", type=Path, default=None,
                        help="a file naming the non-digits drawn exactly like a digit, one a line (adds a column)")
    parser.add_argument("--save", type=Path, default=None, help="write every answer and score to this JSON file")
    args = parser.parse_args(argv)

    def body() -> int:
        labels, digits, others = read_folders(args.digits, args.non_digits)
        like = set() if args.digit_like is None else digit_like_names(args.digit_like, others)
        if like:
            count = sum(other.name in like for other in others)
            print(f"{count:,} of the {len(others):,} non-digits are drawn like a digit ({args.digit_like}): refusing all "
                  f"the others and none of them would refuse {1 - count / len(others):.1%}.\n")
        extra = (" | not drawn like a digit: not a digit", "---|") if like else ("", "")
        print(f"| non-digits/batch | detector | seed | MNIST test | s/epoch | non-digits: not a digit{extra[0]} "
              f"| non-digits: no digit claimed | real digits read right |\n|---|---|---|---|---|---|---|---|{extra[1]}",
              flush=True)
        saved, rows = [], {}
        with tempfile.TemporaryDirectory() as runs_dir:
            for per_batch in args.scribbles:
                for seed in args.seeds:
                    config = Config(**{**parse_recipe(args.recipe), "seed": seed, "epochs": args.epochs,
                                       "data_dir": args.data_dir, "scribbles": per_batch, "runs_dir": runs_dir,
                                       "run_name": f"scribbles{per_batch}-seed{seed}"})
                    result = fit(config, verbose=False)
                    predictor = load_model(checkpoint_path(Path(result["run_dir"]), BEST))
                    validation = load_splits(config.dataset, config.data_dir, config.val_size, seed=config.seed).val
                    with torch.inference_mode():
                        alone = {"familiarity": threshold(image_familiarity(
                                     predictor.network, validation.images, predictor.refusal.familiar)),
                                 "evidence": threshold(evidence(
                                     predict_logits(predictor.network, validation).float() / predictor.temperature))}
                    on_others = answers(predictor, others, alone)
                    on_digits = answers(predictor, digits, alone)
                    seconds = statistics.median(record["seconds"] for record in result["history"])
                    for detector in DETECTORS:
                        said = [a["answers"][detector] for a in on_others]
                        refused = sum(a["outcome"] == NOT_A_DIGIT for a in said) / len(said)
                        unclaimed = sum(a["outcome"] != DIGIT for a in said) / len(said)
                        right = sum(a["answers"][detector]["prediction"] == labels[a["file"]] for a in on_digits)
                        unlike = [a["answers"][detector] for a in on_others if a["file"] not in like]
                        refused_unlike = sum(a["outcome"] == NOT_A_DIGIT for a in unlike) / max(len(unlike), 1)
                        row = (result["test_accuracy"], seconds, refused, unclaimed, right / len(on_digits),
                               refused_unlike)
                        rows.setdefault((per_batch, detector), []).append(row)
                        column = f" | {refused_unlike:.1%}" if like else ""
                        print(f"| {per_batch} | {detector} | {seed} | {row[0]:.2%} | {seconds:.2f} | {refused:.1%}"
                              f"{column} | {unclaimed:.1%} | {right}/{len(on_digits)} ({row[4]:.1%}) |", flush=True)
                    saved.append({"scribbles": per_batch, "seed": seed, "test_accuracy": result["test_accuracy"],
                                  "seconds_per_epoch": seconds, "familiarity_below": result["familiarity_below"],
                                  "evidence_below": result["evidence_below"], "alone": alone,
                                  "temperature": result["temperature"],
                                  "non_digits": [{**a, "digit_like": a["file"] in like} if like else a
                                                 for a in on_others],
                                  "digits": [{**a, "label": labels[a["file"]]} for a in on_digits]})
        for (per_batch, detector), values in rows.items():
            mean = [statistics.fmean(column) for column in zip(*values)]
            column = f" | {mean[5]:.1%}" if like else ""
            print(f"| {per_batch} | {detector} | mean of {len(values)} | {mean[0]:.2%} | {mean[1]:.2f} | {mean[2]:.1%}"
                  f"{column} | {mean[3]:.1%} | {mean[4]:.1%} |")
        if args.save is not None:
            write_json(args.save, saved)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
