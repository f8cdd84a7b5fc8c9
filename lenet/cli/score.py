"""`lenet-score`: a trained model scored on a folder of labelled images, as a report or JSON, with a contact sheet."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from lenet.cli import add_model_arguments, load_announced, print_error, run_parsed
from lenet.errors import LenetError
from lenet.files import printable
from lenet.inference.preprocess import IMAGE_EXTENSIONS
from lenet.inference.score import (LABELS_FILE, SHEET, check_sheet_path, labelled_images, report_json, report_lines,
                                   score, write_sheet)


def score_parser() -> argparse.ArgumentParser:
    """The `lenet-score` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-score", description="Score a trained LeNet-5 on a folder of labelled digit images: accuracy, "
        "accuracy per digit, the non-digits refused (labelled null, or in none/), the confusion pairs, the count of "
        "each outcome (digit, unsure, not a digit), and a contact sheet of the misread images beside the 28x28 input "
        "the model saw.")
    parser.add_argument("folder", metavar="DIR",
                        help="the folder of images: labelled by --labels, or sorted into subfolders 0/ to 9/ "
                             "(and none/ for images that are not digits) "
                             "(required)")
    parser.add_argument("--labels", metavar="FILE", default=None,
                        help=f"a JSON object of image name (relative to DIR) -> digit or null for a non-digit, "
                             f"e.g. {{\"a.png\": 7, \"b.png\": null}} "
                             f"(default: DIR/{LABELS_FILE} if it exists, else the subfolders 0/ to 9/)")
    parser.add_argument("--sheet", metavar="PATH", default=SHEET,
                        help=f"where to write the contact sheet PNG of the misread images (default: {SHEET}, "
                             "written only when an image is misread)")
    parser.add_argument("--no-sheet", action="store_true", help="write no contact sheet (default: off)")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object instead of lines of text (default: off)")
    add_model_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-score` / `python -m lenet.cli.score`: 0 if every image was scored, else 2."""
    return run_parsed(score_parser(), score_folder, argv)


def score_folder(args: argparse.Namespace) -> int:
    """Score the folder the arguments name and print the report (or JSON); write the contact sheet."""
    items = labelled_images(args.folder, args.labels)  # before the model: a bad folder fails fast
    if not args.no_sheet:
        check_sheet_path(Path(args.sheet))
    predictor = load_announced(args)
    result = score(predictor, items)
    for path, message in result.errors:
        print_error(message)
    if not result.scored:
        raise LenetError(f"none of the {len(items)} labelled images could be read: see the errors above.")
    sheet = None
    if result.misread and not args.no_sheet:
        sheet = write_sheet(args.sheet, result.misread, predictor.classes)
    if args.json:
        print(json.dumps(report_json(result, predictor.classes, sheet), indent=2))
    else:
        for line in report_lines(result, predictor.classes):
            print(line)
        if sheet is not None:
            print(printable(f"contact sheet of the {len(result.misread)} misread images: {sheet}"))
        if result.errors:
            print(f"{len(result.errors)} images could not be read (see the errors above): not scored.")
    return 2 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
