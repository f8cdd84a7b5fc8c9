"""Small things several test files need: images they draw, a free port, a killed run, a mouse on a canvas."""

from __future__ import annotations

import io
import socket
import struct
import zlib
from pathlib import Path
from typing import Sequence

from PIL import Image, ImageDraw

from lenet.callbacks import Callback


def png_bytes(image: Image.Image) -> bytes:
    """`image` encoded as PNG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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


def free_port() -> int:
    """A TCP port on loopback that nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
