"""`lenet-predict`: the digit in each image file or folder, as lines of text or one JSON array."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from lenet.cli import add_model_arguments, load_announced, print_error, run_parsed
from lenet.errors import LenetError
from lenet.files import printable
from lenet.inference.predict import Prediction, as_json, classify, expand_inputs, prepare_image
from lenet.inference.preprocess import IMAGE_EXTENSIONS, Preprocessed


def prediction_text(prediction: Prediction, classes: Sequence[str]) -> str:
    """One line: the digit and its probability (or "unsure", or "not a digit"), then the top 3."""
    ranked = prediction.top(3)
    top = ", ".join(f"{classes[index]} {probability:.1%}" for index, probability in ranked)
    best, probability = ranked[0]
    if prediction.label is None:
        return f"{prediction.outcome} (best guess {classes[best]} at {probability:.1%})  top 3: {top}"
    return f"{classes[best]} ({probability:.1%})  top 3: {top}"




def predict_parser() -> argparse.ArgumentParser:
    """The `lenet-predict` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-predict", description="Predict the digit in each image with a trained LeNet-5. Images may be "
        "dark ink on light paper or light on dark, any size; they are prepared as MNIST was.")
    parser.add_argument("images", nargs="+", metavar="IMAGE",
                        help=f"image files ({', '.join(IMAGE_EXTENSIONS)}) or folders of them, read in sorted "
                             "order (required)")
    add_model_arguments(parser)
    parser.add_argument("--json", action="store_true",
                        help="print one JSON array with an object per input instead of lines of text (default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-predict` / `python -m lenet.cli.predict`: 0 if every input was predicted, else 2."""
    return run_parsed(predict_parser(), predict_files, argv)


def predict_files(args: argparse.Namespace) -> int:
    """Predict every image the arguments name, printing one line (or JSON object) per input."""
    predictor = load_announced(args)
    files = expand_inputs(args.images)
    outcomes: dict[int, Prediction | str] = {}  # by position in `files`: a prediction or an error sentence
    ready: list[tuple[int, Preprocessed]] = []
    for index, (file, error) in enumerate(files):
        if error is not None:
            outcomes[index] = error
            continue
        try:
            ready.append((index, prepare_image(file, predictor)))
        except LenetError as failure:
            outcomes[index] = str(failure)
    # Every image that could be read goes through the model in one batch.
    for (index, _), prediction in zip(ready, classify(predictor, [item for _, item in ready])):
        outcomes[index] = prediction
    if args.json:
        print(json.dumps([as_json(file, outcomes[index]) for index, (file, _) in enumerate(files)], indent=2))
    else:
        for index, (file, _) in enumerate(files):
            outcome = outcomes[index]
            if isinstance(outcome, str):
                print_error(outcome)
            else:
                print(printable(f"{file}: {prediction_text(outcome, predictor.classes)}"), flush=True)
    return 2 if any(isinstance(outcome, str) for outcome in outcomes.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
