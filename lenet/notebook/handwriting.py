"""MNIST test digits redrawn the way people bring theirs: larger, with another pen, dark ink on light paper,
in a shadow, small and off-centre on a large page.

Notebooks 06 and 07 make their hard test images with `redraw`, from digits the model never trained on, so
that nobody's handwriting has to ship with the repository: 06 to show what preprocessing fixes, 07 to
measure what training augmentation buys.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageFilter

# Pens, as grey-level erosion (thinner strokes) or dilation (fatter) of a digit enlarged to 280 px, whose
# strokes are then about 25 px wide: the thin pen leaves a few px and breaks the thinnest strokes apart.
PENS = {"thin pen": ("thin", 17), "fine pen": ("thin", 9), "as scanned": None, "marker": ("fat", 9),
        "fat marker": ("fat", 17)}


def redraw(digit: Image.Image, pen: str = "as scanned", size: int = 280, angle: float = 0.0,
           shift: Sequence[float] = (0.0, 0.0), dark_on_light: bool = False, page: int | None = None,
           corner: Sequence[float] = (0.0, 0.0), shadow: float = 0.0, noise: float = 0.0, seed: int = 0) -> Image.Image:
    """A 28x28 MNIST digit (white on black) as a person might bring it, a grayscale PIL image.

    In order: enlarged to `size` px with sharp edges, drawn with `pen` (a key of PENS), turned by `angle` degrees
    and moved by `shift` (fractions of `size`); then placed on a `page` px square at `corner` (the fractions of
    the page left of and above it), turned to dark ink on light paper, lit by a `shadow` that darkens the page
    towards its right edge by that fraction, and given camera `noise` (a standard deviation in grey levels).
    """
    image = digit.convert("L").resize((size, size), Image.Resampling.BICUBIC).point(lambda v: 255 if v > 100 else 0)
    if PENS[pen] is not None:
        kind, width = PENS[pen]
        width = max(3, round(width * size / 280)) | 1  # the same pen, relative to the digit, at any size
        image = image.filter(ImageFilter.MinFilter(width) if kind == "thin" else ImageFilter.MaxFilter(width))
    if angle or any(shift):
        image = image.rotate(angle, resample=Image.Resampling.BILINEAR,
                             translate=(shift[0] * size, shift[1] * size))
    if page is not None:
        sheet = Image.new("L", (page, page), 0)
        sheet.paste(image, (round(corner[0] * page), round(corner[1] * page)))
        image = sheet
    if dark_on_light:
        image = Image.eval(image, lambda v: 255 - v)
    if not shadow and not noise:
        return image
    pixels = np.asarray(image, dtype=np.float64)
    height, width = pixels.shape
    light = np.linspace(1.0, 1.0 - shadow, width)[None, :] * np.linspace(1.0, 1.0 - shadow / 3, height)[:, None]
    pixels = pixels * light + np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))

