"""Small things several test files need: images they draw, a free port, a killed run, a mouse on a canvas,
a wait with a deadline, and where the real MNIST files and a Chromium are."""

from __future__ import annotations

import os
import shutil
import struct
import time
import zlib
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch
from PIL import Image, ImageDraw

from benchmarks.load_test import free_port  # noqa: F401  (one copy, shared with the benchmarks)
from lenet.inference.images import png_bytes  # noqa: F401
from lenet.callbacks import Callback
from lenet.config import Config

T = TypeVar("T")

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def real_mnist_dir() -> Path | None:
    """$LENET_DATA_DIR when it holds the official MNIST files, else None."""
    root = os.environ.get("LENET_DATA_DIR")
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        return Path(root)
    return None


def synthetic_digits(n: int, seed: int, random_labels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """n 28x28 uint8 images where class k is a bright block at a class-specific place, jittered and noisy."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=generator)]
    images = torch.randint(0, 40, (n, 28, 28), generator=generator, dtype=torch.uint8)
    shifts = torch.randint(-2, 3, (n, 2), generator=generator)
    for i, (label, (dy, dx)) in enumerate(zip(labels.tolist(), shifts.tolist())):
        row, col = 4 + (label // 5) * 12 + dy, 3 + (label % 5) * 5 + dx
        images[i, max(row, 0):row + 8, max(col, 0):col + 4] = 255
    if random_labels:
        labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def refusing_copy(checkpoint: Path, path: Path) -> Path:
    """A copy of `checkpoint` whose refusal threshold is above any image's familiarity (a cosine similarity, at most
    1): it answers "not a digit" to everything, so the readers' third outcome can be driven deterministically (the
    detector itself is measured in tests/test_outliers.py and benchmarks/outlier_exposure.py)."""
    from lenet.checkpoint import load_checkpoint, save_checkpoint
    saved = load_checkpoint(checkpoint)
    return save_checkpoint({**saved, "refusal": {**saved["refusal"], "familiarity_below": 1e6}}, path)


def parse_config(argv: Sequence[str]) -> Config:
    """The Config `lenet-train ARGV` would train (it exits with a clear message on bad input)."""
    from lenet.cli.train import config_from_args, train_parser
    parser = train_parser()
    return config_from_args(parser.parse_args(argv), parser)


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """condition()'s first true value, polled until `timeout` s pass; AssertionError naming `what` after that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)
    return value


def huge_png(side: int = 9_000) -> bytes:
    """An 8x8 PNG whose header claims side x side pixels, as a decompression bomb does."""
    png = png_bytes(Image.new("L", (8, 8), 255))
    fields = b"IHDR" + struct.pack(">II", side, side) + png[24:29]
    return png[:12] + fields + struct.pack(">I", zlib.crc32(fields)) + png[33:]


def drawn_seven(path: Path, size: int = 280) -> Path:
    """A black '7' on white, as a user might draw it, saved to path."""
    image = Image.new("RGB", (size, size), "white")
    scale = size / 280
    ImageDraw.Draw(image).line([(90 * scale, 60 * scale), (190 * scale, 60 * scale), (120 * scale, 230 * scale)],
                               fill="black", width=max(1, round(18 * scale)))
    image.save(path)
    return path


class StopAfter(Callback):
    """A `fit` callback that simulates a killed run: Ctrl+C right after a given epoch's checkpoints are written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def draw_on_canvas(page, canvas, strokes: Sequence[Sequence[tuple[float, float]]], size: int = 280) -> None:
    """Drag the mouse along each stroke, given in the canvas's own pixels (0..size), inside its border."""
    canvas.scroll_into_view_if_needed()
    box, border = canvas.bounding_box(), canvas.evaluate("canvas => canvas.clientLeft")
    left, top, scale = box["x"] + border, box["y"] + border, (box["width"] - 2 * border) / size
    for stroke in strokes:
        (x, y), *rest = stroke
        page.mouse.move(left + x * scale, top + y * scale)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(left + x * scale, top + y * scale, steps=10)
        page.mouse.up()
