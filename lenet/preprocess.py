"""Turning any image of a digit into the 1x1x28x28 tensor LeNet-5 expects, prepared as MNIST was made.

MNIST digits are white ink on black, scaled so the longer side is 20 px (anti-aliased, so edges are
grey), and placed in a 28x28 field with their centre of mass at the centre. A user's image is brought
to the same form: transparency flattened, converted to grayscale, inverted when the background is
light, cropped to the ink, scaled to 20 px, centred by centre of mass, then normalized with the
training mean and std stored in the checkpoint.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageChops, ImageOps

from lenet.errors import LenetError

MAX_PIXELS = 40_000_000  # larger images are refused before decoding: about 160 MB as RGBA
FORMATS = "PNG, JPEG, BMP, GIF, WebP or TIFF"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DIGIT_SIZE = 20  # the longer side of the digit inside the 28x28 field, as in MNIST
FIELD_SIZE = 28
CENTRE = 14.0  # where MNIST puts the centre of mass (its mean over the training set is 14.0, 14.0)
INK_THRESHOLD = 0.1  # after contrast stretching, fainter pixels are paper texture or JPEG noise
MIN_CONTRAST = 0.1  # ink must differ from the background by at least this much (about 25 grey levels)

ImageLike = Union[str, os.PathLike, bytes, Image.Image, np.ndarray, torch.Tensor]


class PreprocessError(LenetError):
    """An image that cannot be turned into a digit: unreadable, too large, or blank."""


@dataclass
class Preprocessed:
    """What the model receives and what it sees."""

    tensor: torch.Tensor  # (1, 1, 28, 28) float32, normalized with the training mean and std
    image: np.ndarray  # (28, 28) float32 in [0, 1], white ink on black: what the model sees


def open_image(source: str | os.PathLike | bytes | Image.Image) -> Image.Image:
    """Open an image file, bytes or PIL image safely; PreprocessError naming the file if it is unusable."""
    if isinstance(source, Image.Image):
        check_size(source.size, "the image")
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise PreprocessError("the image data is empty (0 bytes): pass the bytes of a saved image.")
        return decode(io.BytesIO(source), "the image data")
    path = Path(source)
    if not path.exists():
        raise PreprocessError(f"{path} does not exist: check the path.")
    if path.is_dir():
        raise PreprocessError(f"{path} is a folder, not an image: pass an image file.")
    if path.stat().st_size == 0:
        raise PreprocessError(f"{path} is empty (0 bytes): save the image again.")
    try:
        with open(path, "rb") as file:
            return decode(file, str(path))
    except PermissionError:
        raise PreprocessError(f"{path} cannot be read (permission denied): check its permissions.") from None


def decode(file, name: str) -> Image.Image:
    """Decode the first frame of an image from an open binary file, refusing huge or broken images."""
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its own limit and twice that; make the warning an error too.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(file)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise PreprocessError(f"{name} is too large (over {MAX_PIXELS // 1_000_000} megapixels): "
                              "shrink it first.") from None
    except Exception:  # UnidentifiedImageError, or a plugin that chokes on a malformed header
        raise PreprocessError(f"{name} is not an image Pillow can read: use {FORMATS}.") from None
    check_size(image.size, name)  # from the header, before any pixel is decoded
    try:
        image.load()  # an animated image stays on its first frame
    except MemoryError:
        raise PreprocessError(f"{name} is too large to decode in the memory available: shrink it first.") from None
    except Exception:  # Pillow's decoders raise OSError, SyntaxError, ValueError... for broken files
        raise PreprocessError(f"{name} is truncated or corrupt: save or download it again.") from None
    ImageOps.exif_transpose(image, in_place=True)  # a phone photo stored sideways is turned upright
    return image


def check_size(size: tuple[int, int], name: str) -> None:
    """PreprocessError if an image of this (width, height) is empty or above MAX_PIXELS."""
    width, height = size
    if width * height > MAX_PIXELS:
        raise PreprocessError(f"{name} is too large ({width}x{height}, {width * height / 1e6:.0f} megapixels; "
                              f"the limit is {MAX_PIXELS // 1_000_000}): shrink it first.")
    if width == 0 or height == 0:
        raise PreprocessError(f"{name} has no pixels ({width}x{height}): pass an image of a digit.")


def describe(source: ImageLike) -> str:
    """How error messages name an image: its path, or 'the image'."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "the image"


def to_grayscale(image: ImageLike) -> np.ndarray:
    """Any image-like as a 2-D float32 array in [0, 1], transparency flattened onto the background."""
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        if not (image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] in (2, 3, 4)):
            return array_to_grayscale(image)
        check_size((image.shape[1], image.shape[0]), "the image array")
        image = Image.fromarray(image)  # an 8-bit LA, RGB or RGBA canvas: Pillow does the channel maths in C
    image = open_image(image)
    mode = image.mode
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif mode in ("PA", "La", "RGBa"):  # palette with alpha, premultiplied alpha: straight RGBA first
        image = image.convert("RGBA")
    mode = image.mode
    if mode in ("RGBA", "LA"):
        image = flatten_alpha(image)
    elif mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) * (1 / 65535.0)
    elif mode in ("I", "F"):
        return array_to_grayscale(np.asarray(image))
    elif mode != "L":
        image = image.convert("L")  # RGB, CMYK, YCbCr, 1...: ITU-R 601-2 luma
    return np.asarray(image, dtype=np.float32) * (1 / 255.0)


def flatten_alpha(image: Image.Image) -> Image.Image:
    """An RGBA or LA image as grayscale "L", flattened onto white, or onto black if the ink is white."""
    gray, alpha = image.convert("L"), image.getchannel("A")
    if alpha.getextrema()[0] == 255:
        return gray
    on_black = ImageChops.multiply(gray, alpha)  # gray * alpha / 255
    on_white = ImageChops.add(on_black, ImageChops.invert(alpha))  # + (255 - alpha)
    # White is the usual paper; but white ink on a transparent canvas only shows on black.
    low, high = on_white.getextrema()
    black_low, black_high = on_black.getextrema()
    return on_white if high - low >= black_high - black_low else on_black


def array_to_grayscale(array: np.ndarray) -> np.ndarray:
    """A (H, W) or (H, W, 1-4 channels) array (uint8, uint16, bool or float) as 2-D float32 in [0, 1]."""
    if array.ndim == 3 and array.shape[2] in (1, 2, 3, 4):
        channels = array.shape[2]
    elif array.ndim == 2:
        channels = 1
    else:
        raise PreprocessError(f"an image array must be (H, W) or (H, W, 1-4 channels), got shape {array.shape}.")
    check_size((array.shape[1], array.shape[0]), "the image array")
    pixels = scale_to_unit(array)
    if channels == 1:
        return pixels.reshape(array.shape[:2])
    has_alpha = channels in (2, 4)
    colour = pixels[..., :channels - has_alpha]
    gray = colour[..., 0] if colour.shape[2] == 1 else colour @ np.array([0.299, 0.587, 0.114], np.float32)
    if not has_alpha:
        return gray
    alpha = pixels[..., -1]
    on_black = gray * alpha
    on_white = on_black + (1.0 - alpha)
    # As in flatten_alpha: white paper unless the ink itself is white.
    return on_white if np.ptp(on_white) >= np.ptp(on_black) else on_black


def scale_to_unit(array: np.ndarray) -> np.ndarray:
    """Pixel values as float32 in [0, 1]: uint8 / 255, uint16 / 65535, floats as given (or / 255 if above 1)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) * (1 / 255.0)
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if array.dtype == np.uint16:
        return array.astype(np.float32) * (1 / 65535.0)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise PreprocessError(f"an image array must hold numbers, got dtype {array.dtype}.")
    pixels = np.nan_to_num(array.astype(np.float32))
    peak = pixels.max(initial=0.0)
    # Integer or float arrays beyond [0, 1] are taken as 8-bit or 16-bit ranges.
    if peak > 255:
        pixels = pixels * (1 / 65535.0)
    elif peak > 1:
        pixels = pixels * (1 / 255.0)
    return np.clip(pixels, 0.0, 1.0)


def ink_on_black(gray: np.ndarray, name: str = "the image") -> np.ndarray:
    """White ink on black in [0, 1]: inverted if the background is light, background subtracted, stretched."""
    border = np.concatenate([gray[0], gray[-1], gray[1:-1, 0], gray[1:-1, -1]])
    background = float(np.median(border))
    light_background = background > 0.5
    # Paper is rarely pure white and ink rarely pure black: map the background to 0 and the strongest ink to 1.
    contrast = background - float(gray.min()) if light_background else float(gray.max()) - background
    if contrast < MIN_CONTRAST:
        raise PreprocessError(f"{name} is blank, no ink found: draw or photograph a digit "
                              "(dark on light or light on dark).")
    ink = (background - gray) if light_background else (gray - background)  # inverts a light background
    ink *= 1.0 / contrast
    ink[ink < INK_THRESHOLD] = 0.0
    return ink


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle holding every inked pixel."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def scale_longer_side(ink: np.ndarray, size: int = DIGIT_SIZE) -> np.ndarray:
    """Resize so the longer side is `size` px, keeping the aspect ratio, with anti-aliasing; peak set to 1."""
    height, width = ink.shape
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL wants (width, height)
    # Area averaging turns a thin stroke into grey edges, as MNIST's anti-aliasing did; it never overshoots.
    scaled = np.asarray(Image.fromarray(ink, mode="F").resize(new_size, Image.Resampling.BOX))
    peak = scaled.max()
    # A thin pen shrunk tenfold becomes faint; MNIST strokes always reach full white.
    return scaled * (1.0 / peak) if peak > 0 else scaled


def centre_by_mass(digit: np.ndarray, size: int = FIELD_SIZE) -> np.ndarray:
    """Paste `digit` into a size x size black field so its centre of mass lands on (CENTRE, CENTRE)."""
    height, width = digit.shape
    mass = digit.sum()
    com_row = float(digit.sum(axis=1) @ np.arange(height, dtype=np.float32)) / mass
    com_col = float(digit.sum(axis=0) @ np.arange(width, dtype=np.float32)) / mass
    top, left = round(CENTRE - com_row), round(CENTRE - com_col)
    field = np.zeros((size, size), np.float32)
    # A lopsided digit may be shifted past the edge: paste only the part that fits.
    src_top, src_left = max(0, -top), max(0, -left)
    dst_top, dst_left = max(0, top), max(0, left)
    rows = min(height - src_top, size - dst_top)
    cols = min(width - src_left, size - dst_left)
    field[dst_top:dst_top + rows, dst_left:dst_left + cols] = \
        digit[src_top:src_top + rows, src_left:src_left + cols]
    return field


def preprocess_steps(image: ImageLike) -> dict[str, Image.Image | np.ndarray]:
    """Every stage, in order: "raw", "grayscale_inverted", "cropped", "scaled_20px", "centred_28px".

    "raw" is the image as opened (a PIL image, or the array given); the others are float32 arrays in
    [0, 1], white ink on black.
    """
    raw = image if isinstance(image, (np.ndarray, torch.Tensor)) else open_image(image)
    inverted = ink_on_black(to_grayscale(raw), describe(image))
    cropped = crop_to_ink(inverted)
    scaled = scale_longer_side(cropped)
    return {"raw": raw, "grayscale_inverted": inverted, "cropped": cropped, "scaled_20px": scaled,
            "centred_28px": centre_by_mass(scaled)}


def preprocess(image: ImageLike, mean: float, std: float) -> Preprocessed:
    """Any image-like (path, bytes, PIL image, 2-D or RGB(A) array) -> the model's normalized input."""
    digit = centre_by_mass(scale_longer_side(crop_to_ink(ink_on_black(to_grayscale(image), describe(image)))))
    tensor = torch.from_numpy((digit - mean) * (1.0 / std)).view(1, 1, FIELD_SIZE, FIELD_SIZE)
    return Preprocessed(tensor=tensor, image=digit)
