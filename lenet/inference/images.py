"""Image files and image bytes: which files in a folder are images, and encoding a picture as PNG or a data URL.

Reading and preparing an image for the model is `lenet.inference.preprocess`; this module only writes
pictures out (the pad's saved drawings, the 28x28 input shown in a browser, the benchmarks' uploads) and
lists the images of a folder for `lenet-predict DIR` and `lenet-score`.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from PIL import Image

from lenet.inference.preprocess import IMAGE_EXTENSIONS


def png_bytes(image: np.ndarray | Image.Image) -> bytes:
    """`image` as PNG: a PIL image as it is, a float array in [0, 1] as 8-bit grayscale, a uint8 array as is."""
    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            array = np.round(array * 255).clip(0, 255).astype(np.uint8)
        image = Image.fromarray(array)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_data_url(image: np.ndarray | Image.Image) -> str:
    """`image` (as for `png_bytes`) as a data:image/png;base64 URL, for an <img> to show."""
    return "data:image/png;base64," + base64.b64encode(png_bytes(image)).decode("ascii")


def image_files_in(folder: Path) -> list[Path]:
    """The visible files in `folder` with an image extension, sorted; OSError if the folder cannot be listed."""
    return sorted(child for child in folder.iterdir()
                  if child.suffix.lower() in IMAGE_EXTENSIONS and not child.name.startswith(".")
                  and is_file_or_unknown(child))


def is_file_or_unknown(path: Path) -> bool:
    """Whether `path` is a file (symlinks followed), counting one the OS cannot answer about (permission
    denied, an I/O error), so that reading it later reports why instead of it silently vanishing."""
    try:
        return path.is_file()
    except OSError:
        return True
