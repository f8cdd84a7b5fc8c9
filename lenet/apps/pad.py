"""The drawing widget: draw a digit with mouse, pen or finger and watch LeNet-5 read it each time you lift.

`DigitPad(predictor)` shows a 280x280 canvas, a Clear button and the model's answer: the digit, a
bar chart of the 10 probabilities and the 28x28 image the model actually sees. `draw_and_predict()`
loads the newest checkpoint and returns one. With `save_dir`, the pad also shows buttons 0-9 that save
the drawing under `<save_dir>/<digit>/`, to build a test set of your own handwriting.

Why anywidget: the pad is ~150 lines of plain ES-module JavaScript (`lenet/apps/static/pad.js`, styled by
`pad.css`), and anywidget (a pip package with a prebuilt JupyterLab 4 extension) runs it in JupyterLab,
Notebook 7, VS Code and Colab with no `jupyter labextension` or npm build step. ipycanvas would also
install from pip, but it streams drawing commands and mouse events through the kernel one by one, so a
stroke is as smooth as the kernel is fast; here the browser draws locally and sends Python one PNG when
a stroke ends. The same two files make the page `lenet-serve` shows, so there is one pad, one brush.

The browser side is thin on purpose: everything that decides what is shown (blank or not, the
prediction, the message, where a drawing is saved) happens here in `DigitPad`, so tests drive it without
a browser.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import traitlets

from lenet.apps import STATIC
from lenet.inference.images import png_bytes, png_data_url
from lenet.inference.predict import NOT_A_DIGIT, UNSURE, Prediction, Predictor, load_model, predict
from lenet.inference.preprocess import MIN_CONTRAST, ImageLike, PreprocessError, to_grayscale
from lenet.runs import RUNS_DIR

BLANK_MESSAGE = "draw a digit"
CANVAS_SIZE = 280  # pad.js draws on a canvas this size
# A 20 px brush on a 280 px canvas becomes a ~2 px stroke once the digit is scaled into MNIST's
# 20 px box: as thick as MNIST's own pen. Thinner strokes fade away in the shrink.
BRUSH_SIZE = 20


def next_free_path(folder: Path, label: int) -> Path:
    """`folder/<label>_<n>.png` for the n one past the highest already there (1 for the first)."""
    taken = [int(match[1]) for path in folder.glob(f"{label}_*.png")
             if (match := re.fullmatch(rf"{label}_([0-9]+)\.png", path.name))]
    return folder / f"{label}_{max(taken, default=0) + 1}.png"


def as_label(label: Any) -> int | None:
    """`label` as a digit 0-9 (an int or a one-digit string), or None if it is not one."""
    if isinstance(label, str) and re.fullmatch(r"\s*[0-9]\s*", label):
        return int(label)
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and 0 <= label <= 9:
        return int(label)
    return None


def write_new_png(folder: Path, label: int, png: bytes) -> Path:
    """Write `png` to a new `folder/<label>_<n>.png` (see next_free_path), never over an existing file."""
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        path = next_free_path(folder, label)
        try:
            file = open(path, "xb")
        except FileExistsError:  # another pad saving into the same folder took that number a moment ago
            continue
        with file:
            try:
                file.write(png)
            except BaseException:
                file.close()
                path.unlink(missing_ok=True)  # no half-written drawing left to be scored later
                raise
        return path


def reading_message(result: Prediction) -> str:
    """What the pad says about a reading, by its outcome (page.js's `reading` says the same)."""
    top, probability = result.top(1)[0]
    if result.outcome == NOT_A_DIGIT:
        return "that doesn't look like a digit"
    if result.outcome == UNSURE:
        return f"not sure: maybe a {top} ({probability:.0%})"
    return f"it's a {top} ({probability:.0%} sure)"


class DigitPad(anywidget.AnyWidget):
    """A canvas to draw on, a Clear button and the model's answer, updated whenever a stroke ends."""

    _esm = STATIC / "pad.js"
    _css = STATIC / "pad.css"

    message = traitlets.Unicode(BLANK_MESSAGE).tag(sync=True)  # the line of text under the digit
    digit = traitlets.Int(None, allow_none=True).tag(sync=True)  # None while blank or unsure
    probabilities = traitlets.List(traitlets.Float()).tag(sync=True)  # 10 values, empty while blank
    model_input = traitlets.Unicode("").tag(sync=True)  # the 28x28 the model saw, a PNG data URL; "" while blank
    brush_size = traitlets.Int(BRUSH_SIZE).tag(sync=True)  # in canvas pixels
    readings = traitlets.Int(0).tag(sync=True)  # drawings read so far; a change tells the browser to redraw
    save_dir = traitlets.Unicode("").tag(sync=True)  # where save_drawing writes; "" hides the label buttons
    save_message = traitlets.Unicode("").tag(sync=True)  # the line under the label buttons

    def __init__(self, predictor: Predictor, save_dir: str | os.PathLike | None = None, **kwargs: Any) -> None:
        super().__init__(save_dir="" if save_dir is None else os.fspath(save_dir), **kwargs)
        self.predictor = predictor
        self.drawing: np.ndarray | None = None  # the last drawing read, (H, W) in [0, 1]; None while blank
        self.on_msg(self._on_browser_message)

    def show_drawing(self, image: ImageLike) -> None:
        """Predict what the canvas holds (PNG bytes, PIL image, array...) and display it; blank -> "draw a digit"."""
        gray = to_grayscale(image)  # (H, W) in [0, 1]
        if np.ptp(gray) < MIN_CONTRAST:  # an empty canvas, whatever its colour
            self._show_blank()
            return
        try:
            (result,) = predict(self.predictor, [gray])
        except PreprocessError as error:  # a stroke too faint to count as ink
            self._show_blank(message=str(error))
            return
        probabilities = [float(p) for p in result.probabilities]
        self.drawing = gray
        with self.hold_sync():
            self.digit = result.label  # None unless the outcome is "digit"
            self.probabilities = probabilities
            self.model_input = png_data_url(result.image)
            self.readings += 1
            self.message = reading_message(result)
            self.save_message = ""

    def clear(self) -> None:
        """Wipe the canvas and go back to "draw a digit"."""
        self._show_blank()
        self.send({"type": "clear"})

    def save_drawing(self, label: int | str) -> Path | None:
        """Save the last drawing as `<save_dir>/<label>/<label>_<n>.png` and clear the pad for the next one.

        Returns the file's path, or None, with the reason in `save_message`, when nothing was saved: no
        `save_dir`, a label that is not a digit 0-9, or nothing drawn since the last Clear or save.
        """
        digit = as_label(label)
        if not self.save_dir:
            return self._refuse_to_save("this pad has no folder to save into: make it with "
                                        "DigitPad(predictor, save_dir='my_digits').")
        if digit is None:
            return self._refuse_to_save(f"the label must be one digit from 0 to 9, not {label!r}.")
        if self.drawing is None:
            return self._refuse_to_save("draw a digit first, then pick its label.")
        folder = Path(self.save_dir) / str(digit)
        try:
            path = write_new_png(folder, digit, png_bytes(self.drawing))
        except OSError as error:
            return self._refuse_to_save(f"cannot write into {folder} ({error.strerror or error}): "
                                        "free some space or pick another save_dir.")
        self.clear()
        self.save_message = f"saved as {path}"
        return path

    def _refuse_to_save(self, reason: str) -> None:
        self.save_message = f"nothing saved: {reason}"

    def _show_blank(self, message: str = BLANK_MESSAGE) -> None:
        self.drawing = None
        with self.hold_sync():
            self.digit = None
            self.probabilities = []
            self.model_input = ""
            self.readings += 1
            self.message = message

    def _on_browser_message(self, widget: "DigitPad", content: dict[str, Any], buffers: list[memoryview]) -> None:
        if content.get("type") == "drawing" and buffers:
            self.show_drawing(bytes(buffers[0]))
        elif content.get("type") == "clear":
            self._show_blank()
        elif content.get("type") == "save":
            self.save_drawing(content.get("label"))


def draw_and_predict(checkpoint: str | os.PathLike | None = None, runs_dir: str | os.PathLike = RUNS_DIR,
                     save_dir: str | os.PathLike | None = None) -> DigitPad:
    """A DigitPad for `checkpoint`, or for the best checkpoint of the newest run under `runs_dir`.

    With `save_dir`, the pad shows buttons 0-9 that save the drawing under `<save_dir>/<digit>/`.
    """
    return DigitPad(load_model(checkpoint, runs_dir=runs_dir), save_dir=save_dir)
