"""Scoring a trained model on a folder of labelled digit images (the `lenet-score` command is `lenet.cli.score`).

The labels come from a JSON object mapping each image's name (relative to the folder) to its digit,
`{"d001.png": 0, "d002.png": 9, "star.png": null}`, or from digit-named subfolders `0/` ... `9/`; a label
null, or the subfolder `none/`, marks an image that is not a digit, which is right when it is answered
"not a digit". The score is what `lenet-predict` would answer for each image: accuracy (an unsure answer
counts as not read), accuracy per digit, the non-digits refused, the confusion pairs, the count of each
outcome, and a contact sheet of every misread image beside the 28x28 input the model saw, to show whether
the model or the preprocessing was at fault.
"""

from __future__ import annotations

import errno
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from lenet.data import DIGITS
from lenet.errors import LenetError
from lenet.files import atomic_write, checked_path, explain_os_error, printable, require_regular_file
from lenet.inference.images import image_files_in, png_bytes
from lenet.inference.predict import DIGIT, NOT_A_DIGIT, UNSURE, Prediction, Predictor, classify, prepare_image
from lenet.inference.preprocess import IMAGE_EXTENSIONS, open_image, to_grayscale

LABELS_FILE = "labels.json"
NONE = "none"  # the subfolder of images that are not digits; their label is None (null in labels.json)
SHEET = "misread.png"
TILE = 112  # px a side of each picture on the contact sheet (the 28x28 input at 4x)
SHEET_COLUMNS = 4  # misread images per row of the sheet, each as a pair of pictures


@dataclass
class ScoredImage:
    """One labelled image and the model's answer."""

    file: Path
    label: int | None  # None: not a digit
    prediction: Prediction

    @property
    def correct(self) -> bool:
        """Read as its label (an unsure answer never is); a non-digit is right when answered "not a digit"."""
        if self.label is None:
            return self.prediction.outcome == NOT_A_DIGIT
        return self.prediction.label == self.label


@dataclass
class FolderScore:
    """Every labelled image's answer, and the images that could not be read."""

    scored: list[ScoredImage]
    errors: list[tuple[Path, str]]  # (file, the one-sentence reason)

    @property
    def correct(self) -> int:
        return sum(item.correct for item in self.scored)

    def count(self, outcome: str, digits: bool | None = None) -> int:
        """How many answers were `outcome`: of every image, or only of the digits (True) or non-digits (False)."""
        return sum(item.prediction.outcome == outcome for item in self.scored
                   if digits is None or (item.label is not None) == digits)

    @property
    def unsure(self) -> int:
        return self.count(UNSURE)

    @property
    def refused(self) -> int:
        """Answered "not a digit"."""
        return self.count(NOT_A_DIGIT)

    @property
    def wrong(self) -> int:
        """Read confidently as a digit it is not (a non-digit read as any digit)."""
        return sum(not item.correct and item.prediction.outcome == DIGIT for item in self.scored)

    @property
    def non_digits(self) -> tuple[int, int]:
        """(answered "not a digit", total) over the images labelled as not digits."""
        return self.count(NOT_A_DIGIT, digits=False), sum(item.label is None for item in self.scored)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.scored) if self.scored else 0.0

    @property
    def misread(self) -> list[ScoredImage]:
        """Every image not read as its label (wrong or unsure), in file order."""
        return [item for item in self.scored if not item.correct]

    def per_digit(self) -> dict[int, tuple[int, int]]:
        """For each digit that has images: (read correctly, total)."""
        totals = Counter(item.label for item in self.scored if item.label is not None)
        hits = Counter(item.label for item in self.scored if item.correct and item.label is not None)
        return {digit: (hits[digit], totals[digit]) for digit in sorted(totals)}

    def confusions(self) -> list[tuple[int | None, int, int]]:
        """(label, read as, count) for every confident misreading, most frequent first (label None: not a digit)."""
        pairs = Counter((item.label, item.prediction.label) for item in self.scored
                        if not item.correct and item.prediction.label is not None)
        return [(label, read, count) for (label, read), count in
                sorted(pairs.items(), key=lambda pair: (-pair[1], -1 if pair[0][0] is None else pair[0][0]))]


def read_labels_file(folder: Path, labels: Path) -> list[tuple[Path, int | None]]:
    """(image path, digit or None) for each entry of a labels JSON object; LenetError naming what is wrong."""
    hint = "pass --labels the JSON file of labels"
    require_regular_file(labels, "labels file", hint)  # a FIFO would hang the read
    try:
        text = labels.read_text(encoding="utf-8")
    except OSError as error:
        raise LenetError(explain_os_error(labels, error, "labels file", hint)) from None
    except UnicodeDecodeError as error:
        raise LenetError(f"{labels} is not UTF-8 text ({error.reason} at byte {error.start}): save it as "
                         "UTF-8 JSON.") from None
    try:
        entries = json.loads(text)
    except json.JSONDecodeError as error:
        raise LenetError(f"{labels} is not valid JSON ({error.msg} at line {error.lineno}, column "
                         f"{error.colno}): write it as {{\"image.png\": 7, ...}}.") from None
    if not isinstance(entries, dict):
        raise LenetError(f"{labels} holds a JSON {type(entries).__name__}, not an object: write it as "
                         "{\"image.png\": 7, ...}.")
    items = []
    for name, digit in entries.items():
        # A digit may be written 7 or "7"; true, 7.5, 10 and "seven" are mistakes.
        # null (or "none") marks an image that is not a digit.
        if isinstance(digit, str) and digit.strip() in DIGITS:
            digit = int(digit)
        elif digit is None or (isinstance(digit, str) and digit.strip().lower() == NONE):
            items.append((folder / name, None))
            continue
        if isinstance(digit, bool) or not isinstance(digit, int) or not 0 <= digit <= 9:
            raise LenetError(f"{labels} labels {name!r} as {json.dumps(digit)}: a label must be a digit 0-9, "
                             "or null for an image that is not a digit.")
        items.append((folder / name, digit))
    return items


def read_digit_folders(folder: Path) -> list[tuple[Path, int | None]]:
    """(image path, digit) for every image in the subfolders 0/ ... 9/ of `folder`, in sorted order, then
    (image path, None) for those in none/."""
    items = []
    for digit in [*range(10), None]:
        subfolder = folder / (NONE if digit is None else str(digit))
        if subfolder.is_dir():
            items.extend((path, digit) for path in image_files_in(subfolder))
    return items


def labelled_images(folder: str | os.PathLike, labels: str | os.PathLike | None = None) -> list[tuple[Path, int | None]]:
    """The labelled images of `folder`: from `labels` (default: folder/labels.json if it exists), else
    from its digit-named subfolders; LenetError if the folder or the labels are unusable or hold no images."""
    folder = checked_path(folder, "folder of labelled images",
                           f"{folder} does not exist: pass the folder of labelled images.")
    try:
        return find_labelled_images(folder, labels)
    except OSError as error:  # a subfolder that cannot be listed, an I/O error
        where = Path(error.filename) if error.filename else folder
        raise LenetError(explain_os_error(where, error, "folder of labelled images")) from None


def find_labelled_images(folder: Path, labels: str | os.PathLike | None) -> list[tuple[Path, int | None]]:
    """`labelled_images` of a folder that exists."""
    if not folder.is_dir():
        raise LenetError(f"{folder} is not a folder: pass the folder of labelled images.")
    if labels is None and (folder / LABELS_FILE).is_file():
        labels = folder / LABELS_FILE
    if labels is not None:
        items = read_labels_file(folder, Path(labels))
        where = f"{labels} lists no images"
    else:
        if not any((folder / name).is_dir() for name in (*DIGITS, NONE)):
            raise LenetError(f"{folder} has no {LABELS_FILE} and no digit-named subfolders (0/ to 9/, {NONE}/): "
                             "pass --labels FILE, or sort the images into subfolders named for their digit.")
        items = read_digit_folders(folder)
        where = f"the subfolders 0/ to 9/ and none/ of {folder} hold no images ({', '.join(IMAGE_EXTENSIONS)})"
    if not items:
        raise LenetError(f"{where}: there is nothing to score.")
    return items


def score(predictor: Predictor, items: Sequence[tuple[Path, int | None]]) -> FolderScore:
    """Predict every labelled image (one batch); an unreadable image becomes an error, not a crash."""
    ready, errors = [], []
    for path, label in items:
        try:
            ready.append((path, label, prepare_image(path, predictor)))
        except LenetError as error:
            errors.append((path, str(error)))
    predictions = classify(predictor, [item for _, _, item in ready])
    scored = [ScoredImage(file=path, label=label, prediction=prediction)
              for (path, label, _), prediction in zip(ready, predictions)]
    return FolderScore(scored=scored, errors=errors)


def label_name(label: int | None, classes: Sequence[str]) -> str:
    """The class name of a label, or "not a digit"."""
    return NOT_A_DIGIT if label is None else classes[label]


def answer_text(item: ScoredImage, classes: Sequence[str]) -> str:
    """'9 read as 8 (71%)', '9: unsure (best guess 8, 45%)', 'not a digit read as 7 (93%)'."""
    best, probability = item.prediction.top(1)[0]
    if item.prediction.label is None:
        return (f"{label_name(item.label, classes)}: {item.prediction.outcome} "
                f"(best guess {classes[best]}, {probability:.0%})")
    return f"{label_name(item.label, classes)} read as {classes[best]} ({probability:.0%})"


def thumbnail(path: Path) -> Image.Image:
    """The image as the user sees it, fitted into a TILE x TILE white square."""
    image = open_image(path)
    try:
        image = image.convert("RGB")
    except (ValueError, OSError):  # a colour mode Pillow cannot convert: show its grayscale
        image = Image.fromarray(np.round(to_grayscale(image) * 255).astype(np.uint8)).convert("RGB")
    tile = Image.new("RGB", (TILE, TILE), "white")
    fitted = ImageOps.contain(image, (TILE, TILE))
    tile.paste(fitted, ((TILE - fitted.width) // 2, (TILE - fitted.height) // 2))
    return tile


def contact_sheet(misread: Sequence[ScoredImage], classes: Sequence[str]) -> Image.Image:
    """Each misread image beside the 28x28 input the model saw (at 4x), captioned with its file and answer."""
    font = ImageFont.load_default()
    caption = 30  # px of text under each pair
    gap = 12
    columns = min(SHEET_COLUMNS, len(misread))
    rows = -(-len(misread) // columns)
    cell_width, cell_height = 2 * TILE + 4 + gap, TILE + caption + gap
    sheet = Image.new("RGB", (columns * cell_width + gap, rows * cell_height + gap), (235, 235, 235))
    draw = ImageDraw.Draw(sheet)
    for index, item in enumerate(misread):
        left = gap + (index % columns) * cell_width
        top = gap + (index // columns) * cell_height
        sheet.paste(thumbnail(item.file), (left, top))
        seen = Image.fromarray(np.round(item.prediction.image * 255).astype(np.uint8))
        sheet.paste(seen.resize((TILE, TILE), Image.Resampling.NEAREST).convert("RGB"), (left + TILE + 4, top))
        draw.text((left, top + TILE + 2), printable(item.file.name), fill="black", font=font)
        draw.text((left, top + TILE + 15), answer_text(item, classes), fill=(180, 0, 0), font=font)
    return sheet


def write_sheet(path: str | os.PathLike, misread: Sequence[ScoredImage], classes: Sequence[str]) -> Path:
    """Draw the contact sheet and write it as a PNG, atomically; LenetError naming --sheet if it cannot be written."""
    png = png_bytes(contact_sheet(misread, classes))
    try:
        return atomic_write(path, lambda file: file.write(png))
    except OSError as error:
        raise LenetError(cannot_write_sheet(Path(path), error)) from None


def check_sheet_path(path: Path) -> None:
    """LenetError now, before any image is read, if the OS already refuses `path` for the contact sheet."""
    try:
        path.stat()
    except FileNotFoundError:
        pass  # as it should be: written later, its folders made
    except OSError as error:
        raise LenetError(cannot_write_sheet(path, error)) from None


def cannot_write_sheet(path: Path, error: OSError) -> str:
    """Why the contact sheet cannot be written at `path`, and what to do, in one sentence."""
    if isinstance(error, (FileExistsError, NotADirectoryError)):  # mkdir or open met a file where a folder goes
        reason = "part of its folder path is a file, not a folder"
    elif error.errno == errno.ENAMETOOLONG:
        reason = "its name is longer than the file system allows"
    else:
        reason = error.strerror or str(error)
    return f"cannot write the contact sheet {path}: {reason}; choose another --sheet path, or pass --no-sheet."


def report_lines(result: FolderScore, classes: Sequence[str]) -> list[str]:
    """The score as lines of text: accuracy, per digit, confusion pairs, and each misread image."""
    total = len(result.scored)
    lines = [f"accuracy {result.accuracy:.1%} ({result.correct}/{total}): {result.wrong} wrong, "
             f"{result.unsure} unsure, {result.refused} not a digit"]
    per_digit = result.per_digit()
    if per_digit:
        lines.append("per digit: " + "  ".join(f"{classes[digit]} {hits / count:.0%} ({hits}/{count})"
                                              for digit, (hits, count) in per_digit.items()))
    refused, others = result.non_digits
    if others:
        lines.append(f"not digits: {refused / others:.0%} answered \"not a digit\" ({refused}/{others}), "
                     f"{result.count(UNSURE, digits=False)} unsure, {result.count(DIGIT, digits=False)} read as a digit")
    confusions = result.confusions()
    lines.append("confusions (label -> read as): " + (", ".join(
        f"{label_name(label, classes)} -> {classes[read]} x{count}" for label, read, count in confusions) or "none"))
    lines.extend(printable(f"  {item.file}: {answer_text(item, classes)}") for item in result.misread)
    return lines


def report_json(result: FolderScore, classes: Sequence[str], sheet: Path | None) -> dict:
    """The --json object: the same facts as the text report, plus every error."""
    return {
        "total": len(result.scored), "correct": result.correct, "wrong": result.wrong, "unsure": result.unsure,
        "not_a_digit": result.refused, "accuracy": round(result.accuracy, 6),
        "outcomes": {kind: {outcome: result.count(outcome, digits) for outcome in (DIGIT, UNSURE, NOT_A_DIGIT)}
                     for kind, digits in (("digits", True), ("not_digits", False))},
        "per_digit": {classes[digit]: {"correct": hits, "total": count, "accuracy": round(hits / count, 6)}
                      for digit, (hits, count) in result.per_digit().items()},
        "confusions": [{"label": label, "read_as": read, "count": count}
                       for label, read, count in result.confusions()],
        "misread": [{"file": printable(str(item.file)), "label": item.label, "read_as": item.prediction.label,
                     "outcome": item.prediction.outcome, "best_guess": item.prediction.top(1)[0][0],
                     "probability": round(item.prediction.probability, 6)} for item in result.misread],
        "errors": [{"file": printable(str(path)), "error": printable(message)} for path, message in result.errors],
        "sheet": printable(str(sheet)) if sheet is not None else None,
    }
