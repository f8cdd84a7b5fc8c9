"""Turning any image of a digit into the 1x1x28x28 tensor LeNet-5 expects, prepared as MNIST was made.

MNIST digits are white ink on black, written with a pen about 3 px wide, scaled so the longer side is
20 px (anti-aliased, so edges are grey), and placed in a 28x28 field with their centre of mass at the
centre. A user's image is brought to the same form, one step per function, each step a stage of
`preprocess_steps`:

- grayscale: transparency flattened, colour converted to luma, a large image shrunk to WORK_SIZE;
- ink_on_black: the paper's light (shadows, gradients, tinted paper) fitted by a smooth surface and
  subtracted, so the ink is white on black whether it was dark on light or light on dark;
- specks_removed: only the strokes kept (a hysteresis threshold, then connected components): no paper
  texture, specks, or frame lines along the edges; a digit touching the edges stays whole;
- cropped to the ink; stroke_normalised: strokes thinner or fatter than MNIST's pen dilated or eroded
  into its range (a 1-px line and a fat marker both end up MNIST-like);
- scaled_20px by area averaging; centred_28px by centre of mass; then normalized with the training
  mean and std stored in the checkpoint.
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
from scipy import ndimage

from lenet.data import CENTRE, DIGIT_SIZE, FIELD_SIZE
from lenet.errors import LenetError
from lenet.files import require_regular_file

MAX_PIXELS = 40_000_000  # larger images are refused before decoding: about 160 MB as RGBA
IMAGE_FORMATS = "PNG, JPEG, BMP, GIF, WebP or TIFF"
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
MIN_INK_LENGTH = 0.1  # less ink than a 1-px line a tenth of the image's longer side long: specks, no digit
MIN_CONTRAST = 0.1  # ink must differ from the background by at least this much (about 25 grey levels)

WORK_SIZE = 256  # a larger image is shrunk so its longer side is this (a digit needs far fewer pixels)
SURFACE_SAMPLES = 48  # the paper's light is fitted on about this many points a side
SURFACE_DEGREE = 2  # a quadratic surface follows vignetting, gradients and soft shadows, never strokes
NOISE_FLOOR = 0.01  # below this the paper counts as noise-free (a digital drawing): about 2.5 grey levels
INK_HIGH = 0.5  # a stroke holds ink at least this strong (a fraction of the strongest ink)...
INK_LOW = 0.25  # ...and extends through pixels at least this strong
NOISE_SIGMAS = 4.0  # ink within this many noise stds of the paper is the paper's own texture
SPECK_FRACTION = 0.02  # a blob under this share of the digit's ink is a speck, wherever it is
STRAY_FRACTION = 0.15  # a blob under this share that lies away from the digit is stray ink too
FRAME_SPAN = 0.9  # a line across this share of the image, inside the border band, is a frame or an edge
FRAME_BAND = 0.1
SUPERSAMPLE = 4  # strokes are redrawn at 4x the final size, then area-averaged: MNIST-like grey edges
# MNIST's own pen widths, 10th to 90th percentile (median 3.1), in px of the 20 px digit, as `stroke_width`
# measures them after this module's steps (5,000 training digits). Wider or narrower strokes are clamped.
STROKE_RANGE = (2.3, 4.0)

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
    if path.is_dir():
        raise PreprocessError(f"{path} is a folder, not an image: pass an image file.")
    try:
        # A FIFO would block forever and /dev/zero never ends: only a regular file is opened.
        require_regular_file(path, "digit image")
    except LenetError as error:
        raise PreprocessError(str(error)) from None
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
        raise PreprocessError(f"{name} is not an image Pillow can read: use {IMAGE_FORMATS}.") from None
    check_size(image.size, name)  # from the header, before any pixel is decoded
    if image.format == "JPEG" and max(image.size) > 2 * WORK_SIZE:
        # A phone photo is decoded at 1/2, 1/4 or 1/8 scale (still above WORK_SIZE): several times faster.
        scale = max(image.size) / WORK_SIZE
        image.draft(image.mode, (round(image.width / scale), round(image.height / scale)))
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


def source_name(source: ImageLike) -> str:
    """How error messages name an image: its path, or 'the image'."""
    return str(source) if isinstance(source, (str, os.PathLike)) else "the image"


def to_grayscale(image: ImageLike, name: str = "the image") -> np.ndarray:
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
    try:
        if mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        elif mode in ("PA", "La", "RGBa"):  # palette with alpha, premultiplied alpha: straight RGBA first
            image = image.convert("RGBA")
        elif mode == "LAB":  # Pillow cannot convert LAB, but its L channel is the lightness itself
            image = image.getchannel("L")
        mode = image.mode
        if mode in ("RGBA", "LA"):
            image = flatten_alpha(image)
        elif mode.startswith("I;16"):
            return np.asarray(image, dtype=np.float32) * (1 / 65535.0)
        elif mode in ("I", "F"):
            return array_to_grayscale(np.asarray(image))
        elif mode != "L":
            image = image.convert("L")  # RGB, CMYK, YCbCr, HSV, 1...: ITU-R 601-2 luma
        return np.asarray(image, dtype=np.float32) * (1 / 255.0)
    except (ValueError, OSError, TypeError, KeyError) as error:  # a mode Pillow reads but cannot convert
        raise PreprocessError(f"{name} has the colour mode {mode}, which cannot be converted to grayscale "
                              f"({str(error).splitlines()[0] if str(error) else type(error).__name__}): "
                              "save it as an RGB or grayscale image.") from None


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
    with np.errstate(over="ignore"):  # a float64 beyond float32's range becomes inf, then float32's largest
        pixels = np.nan_to_num(array.astype(np.float32))
    peak = pixels.max(initial=0.0)
    # Integer or float arrays beyond [0, 1] are taken as 8-bit or 16-bit ranges.
    if peak > 255:
        pixels = pixels * (1 / 65535.0)
    elif peak > 1:
        pixels = pixels * (1 / 255.0)
    return np.clip(pixels, 0.0, 1.0)


def shrink_to_working_size(gray: np.ndarray, name: str = "the image", size: int = WORK_SIZE) -> tuple[np.ndarray, int]:
    """`gray` averaged over k x k blocks so its longer side is at most `size` px; and k (1: unchanged).

    A k-fold shrink leaves a 1-px stroke with 1/k of its contrast: faint, but still there. An image whose
    shorter side is under k px (over `size` times longer than wide) would shrink to nothing across: it is
    refused here, so every later step works on at least one pixel each way.
    """
    height, width = gray.shape
    factor = -(-max(height, width) // size)  # ceiling division
    if min(height, width) < factor:
        raise PreprocessError(f"{name} is {width}x{height} px: too thin to hold a digit (under 1 px across once "
                              f"shrunk to {size} px long): crop it to the digit with some paper around it.")
    if factor == 1:
        return gray, 1
    # The last (height % factor) rows and columns, under one working pixel, are dropped.
    blocks = gray[:height - height % factor, :width - width % factor]
    rows = blocks.reshape(height // factor, factor, -1).mean(axis=1)
    return rows.reshape(height // factor, -1, factor).mean(axis=2), factor


def paper_surface(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under the ink, as a smooth surface.

    A polynomial fitted to a grid of samples, refitted a few times without the samples far from it (the
    ink, either dark or light): it follows uneven light and coloured gradients but never a stroke, however
    thick. A hard-edged shadow is beyond it; its edge is left to the component step.
    """
    height, width = gray.shape
    sample_rows = np.unique(np.linspace(0, height - 1, min(height, SURFACE_SAMPLES)).round().astype(int))
    sample_cols = np.unique(np.linspace(0, width - 1, min(width, SURFACE_SAMPLES)).round().astype(int))
    row_axis = np.linspace(-1, 1, height, dtype=np.float32)
    col_axis = np.linspace(-1, 1, width, dtype=np.float32)
    rows, cols = np.meshgrid(row_axis[sample_rows], col_axis[sample_cols], indexing="ij")
    terms = [(i, j) for i in range(SURFACE_DEGREE + 1) for j in range(SURFACE_DEGREE + 1 - i)]
    design = np.stack([(rows ** i * cols ** j).ravel() for i, j in terms], axis=1).astype(np.float64)
    samples = gray[np.ix_(sample_rows, sample_cols)]
    values = samples.ravel().astype(np.float64)
    # Start flat at the border's median: the paper, even where a big or tightly cropped digit is most of
    # the image. Then let the fit bend to the paper's light.
    border = np.concatenate([samples[0], samples[-1], samples[1:-1, 0], samples[1:-1, -1]])
    fitted = np.full_like(values, np.median(border))
    coefficients = None
    spread = max(NOISE_FLOOR, robust_std(border - np.median(border)))
    paper = np.abs(values - fitted) <= 3 * spread
    for _ in range(4):
        if paper.sum() <= 2 * len(terms):  # too few paper samples to bend the surface (a tiny image)
            break
        # Normal equations: a 6x6 solve (LAPACK's full least squares spawns threads, slow on a busy CPU).
        kept = design[paper]
        coefficients = np.linalg.lstsq(kept.T @ kept, kept.T @ values[paper], rcond=None)[0]
        fitted = design @ coefficients
        residual = np.abs(values - fitted)
        spread = max(NOISE_FLOOR, robust_std(residual[paper]))
        refit = residual <= 3 * spread
        if np.array_equal(refit, paper):
            break
        paper = refit
    if coefficients is None:
        return np.full((height, width), np.float32(np.median(border)))
    # On the full grid: (row powers) @ (coefficients by power) @ (column powers), no (pixels x terms) matrix.
    by_power = np.zeros((SURFACE_DEGREE + 1, SURFACE_DEGREE + 1), np.float32)
    for (i, j), coefficient in zip(terms, coefficients):
        by_power[i, j] = coefficient
    powers = np.arange(SURFACE_DEGREE + 1)
    return ((row_axis[:, None] ** powers) @ by_power @ (col_axis[:, None] ** powers).T).astype(np.float32)


def robust_std(deviations: np.ndarray) -> float:
    """The std of normal noise from its deviations from the centre: 1.4826 x their median absolute value.

    Unlike the std itself, the median is not swayed by the strokes among the samples, as long as they are
    fewer than half of them.
    """
    return 1.4826 * float(np.median(np.abs(deviations)))


def pixel_noise(gray: np.ndarray, floor: float = NOISE_FLOOR) -> float:
    """The std of the pixel-to-pixel noise (sensor, JPEG, paper grain), from neighbours' differences."""
    differences = np.diff(gray[::2], axis=1)  # every other row is plenty
    if differences.size < 100:  # a thumbnail: too few pixels to tell noise from strokes
        return floor
    # Strokes' edges are few: the median difference of neighbours is the noise's, times sqrt(2).
    return max(floor, robust_std(differences) / np.sqrt(2))


def ink_on_black(gray: np.ndarray, name: str = "the image", shrink: int = 1) -> np.ndarray:
    """White ink on black in [0, 1]: the paper's light subtracted, inverted if the ink is dark, stretched.

    `shrink` is how many times the image was shrunk (see shrink_to_working_size): a thin stroke keeps
    1/shrink of its contrast, so the tests for blank paper and for noise are that much finer.
    """
    residual = gray - paper_surface(gray)
    noise = pixel_noise(gray, NOISE_FLOOR / shrink)
    # Ink is on one side of the paper and noise on both: the side with more mass beyond the noise is ink.
    margin = NOISE_SIGMAS * noise
    dark_mass = float(np.maximum(-residual - margin, 0).sum())
    light_mass = float(np.maximum(residual - margin, 0).sum())
    ink = -residual if dark_mass >= light_mass else residual
    contrast = float(ink.max())
    if contrast < max(MIN_CONTRAST / shrink, 2 * margin):
        raise PreprocessError(f"{name} is blank, no ink found: draw or photograph a digit "
                              "(dark on light or light on dark).")
    ink = np.clip(ink * (1.0 / contrast), 0.0, 1.0)
    ink[ink < margin / contrast] = 0.0  # paper texture and JPEG noise
    return ink


# The neighbourhoods of a pixel: its 4 side neighbours and itself, or all 8 and itself.
CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], bool)
SQUARE = np.ones((3, 3), bool)


def remove_specks(ink: np.ndarray) -> np.ndarray:
    """Only the digit's strokes: faint texture, isolated specks and frame lines along the border set to 0.

    A stroke is a connected blob of ink above INK_LOW that reaches INK_HIGH somewhere (hysteresis, so a
    pencil line that fades stays whole). Of those, the frame lines (long and thin, inside the border
    band) go, then every blob that is tiny beside the digit or small and away from it.
    """
    height, width = ink.shape
    labels, count = ndimage.label(ink >= INK_LOW, structure=SQUARE)  # blobs touching at a corner are one
    strong = np.unique(labels[ink >= INK_HIGH])
    strong = strong[strong > 0]
    mass = ndimage.sum_labels(ink, labels, np.arange(count + 1))
    # Each blob's box, bounds included (row 0 stands for the background, label 0).
    boxes = np.array([(0, 0, -1, -1)] + [(rows.start, cols.start, rows.stop - 1, cols.stop - 1)
                                          for rows, cols in ndimage.find_objects(labels)])
    top, left, bottom, right = boxes.T

    # A frame (a drawn border, the paper's edge, a scanner's shadow) runs along a side, inside the border band.
    band_rows, band_cols = max(1, round(FRAME_BAND * height)), max(1, round(FRAME_BAND * width))
    inside = np.bincount(labels[band_rows:-band_rows, band_cols:-band_cols].ravel(), minlength=count + 1)
    long = ((right - left + 1 >= FRAME_SPAN * width) | (bottom - top + 1 >= FRAME_SPAN * height))
    frame = long & (inside == 0)
    candidates = [index for index in strong if not frame[index]] or list(strong)
    candidates.sort(key=lambda index: -mass[index])
    total = sum(mass[index] for index in candidates)
    main = candidates[0]
    # The digit's box, widened by a quarter of its size: a detached stroke of the digit lies inside.
    margin = max(bottom[main] - top[main], right[main] - left[main]) / 4
    box = (top[main] - margin, left[main] - margin, bottom[main] + margin, right[main] + margin)
    kept = np.zeros(count + 1, bool)
    for index in candidates:
        share = mass[index] / total
        near = (top[index] >= box[0] and left[index] >= box[1] and bottom[index] <= box[2]
                and right[index] <= box[3])
        kept[index] = index == main or (share >= SPECK_FRACTION and (near or share >= STRAY_FRACTION))
    return np.where(kept[labels], ink, np.float32(0.0))


def crop_to_ink(ink: np.ndarray) -> np.ndarray:
    """The smallest rectangle holding every inked pixel."""
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def dilate(image: np.ndarray, steps: int) -> np.ndarray:
    """Grow the ink by `steps` px (each pixel takes its neighbours' max), alternating cross and square
    steps so it grows about as a disc; on a grey image the edges stay anti-aliased."""
    for step in range(steps):
        image = ndimage.grey_dilation(image, footprint=SQUARE if step % 2 else CROSS, mode="constant", cval=0)
    return image


def erode(image: np.ndarray, square: bool) -> np.ndarray:
    """Shrink the ink by 1 px: each pixel takes the min of its 4 neighbours (all 8 if `square`) and itself;
    past the edge is black, so ink touching the edge is eaten from that side too."""
    return ndimage.grey_erosion(image, footprint=SQUARE if square else CROSS, mode="constant", cval=0)


def stroke_width(mask: np.ndarray) -> float:
    """The typical stroke width of a boolean drawing, in px (2 for anything 2 px or thinner).

    Each erosion takes about 1 px off every side. Modelling the ink as one long stroke (length L, width
    w), half its area is gone after k erosions when (L - 2k)(w - 2k) = Lw / 2; counting k (interpolated)
    gives L + w, and with the area Lw, w itself, for a long thin pen or a short fat marker alike.
    """
    area = [int(mask.sum())]
    if area[0] == 0:
        return 0.0
    steps = 0
    while area[-1] > area[0] / 2:
        mask = erode(mask, square=steps % 2 == 1)
        steps += 1
        area.append(int(mask.sum()))
    before, after = area[-2], area[-1]
    half = steps - 1 + (before - area[0] / 2) / max(before - after, 1)  # erosions to half the area
    length_plus_width = (area[0] / 2 + 4 * half * half) / (2 * half)
    return (length_plus_width - np.sqrt(max(0.0, length_plus_width ** 2 - 4 * area[0]))) / 2


def resize_ink(ink: np.ndarray, size: int, keep_thin_lines: bool = False) -> np.ndarray:
    """`ink` with its longer side `size` px (bilinear up, area-averaged down), its peak set to 1.

    With `keep_thin_lines`, each block of a large shrink first keeps its strongest ink, so a line far
    thinner than a block stays at full strength instead of fading away.
    """
    height, width = ink.shape
    factor = int(max(height, width) // size)
    if keep_thin_lines and factor >= 2:
        ink = np.pad(ink, ((0, -height % factor), (0, -width % factor)))
        ink = ink.reshape(ink.shape[0] // factor, factor, ink.shape[1] // factor, factor).max(axis=(1, 3))
        height, width = ink.shape
    scale = size / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = Image.Resampling.BILINEAR if scale > 1 else Image.Resampling.BOX
    resized = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(new_size, method))
    return resized * (1.0 / resized.max())


def normalise_stroke(cropped: np.ndarray) -> np.ndarray:
    """The digit with its strokes brought into MNIST's range of pen widths, STROKE_RANGE.

    A thinner stroke is redrawn at SUPERSAMPLE x DIGIT_SIZE px and dilated to the range's lower end, a
    fatter one eroded to its upper end (widths as measured after the final scaling); one within the
    range is left exactly as drawn, so the change is never more than the stroke needs.
    """
    size = SUPERSAMPLE * DIGIT_SIZE
    strongest = resize_ink(cropped, size, keep_thin_lines=True)
    width = stroke_width(strongest >= INK_LOW) / SUPERSAMPLE  # in px of the final 20 px digit
    target = min(max(width, STROKE_RANGE[0]), STROKE_RANGE[1])
    # n px off (or onto) each side of every stroke also shortens (or lengthens) the digit by 2n, which the
    # final scaling to DIGIT_SIZE takes back: solve (w - 2n) / (size - 2n) = target / DIGIT_SIZE.
    steps = round((DIGIT_SIZE * width * SUPERSAMPLE - size * target) / (2 * DIGIT_SIZE - 2 * target))
    if steps == 0:
        return cropped  # as drawn: the final scaling is its only resampling
    if steps < 0:
        # A thin stroke's greys say nothing about MNIST's pen: it is redrawn from its shape alone.
        return crop_to_ink(dilate(np.pad((strongest >= INK_LOW).astype(np.float32), -steps), -steps))
    ink = resize_ink(cropped, size)
    for step in range(steps):  # erosion thins a fat stroke evenly (it may cut a much thinner part)
        eroded = erode(ink, square=step % 2 == 1)
        if eroded.max() < INK_HIGH:
            break
        ink = eroded
    return crop_to_ink(ink)


def scale_longer_side(ink: np.ndarray, size: int = DIGIT_SIZE) -> np.ndarray:
    """Resize so the longer side is `size` px, keeping the aspect ratio, with anti-aliasing; core set to 1."""
    height, width = ink.shape
    scale = size / max(height, width)
    # The shorter side is padded with black to a whole number of output px, so a narrow '1' keeps its
    # stroke width instead of being stretched to fill its last pixel.
    new_size = (max(1, int(np.ceil(width * scale - 1e-6))), max(1, int(np.ceil(height * scale - 1e-6))))
    padded = (round(new_size[1] / scale), round(new_size[0] / scale))
    pad_rows, pad_cols = max(0, padded[0] - height), max(0, padded[1] - width)
    ink = np.pad(ink, ((pad_rows // 2, pad_rows - pad_rows // 2), (pad_cols // 2, pad_cols - pad_cols // 2)))
    # Area averaging turns a sharp stroke edge into grey, as MNIST's anti-aliasing did; it never overshoots.
    scaled = np.asarray(Image.fromarray(ink.astype(np.float32)).resize(new_size, Image.Resampling.BOX))
    inked = scaled[scaled > 0]
    if inked.size == 0:
        return scaled
    # MNIST's strokes have a white core: in 99% of its digits at least a tenth of the ink is at full white.
    # A faint pencil, or a photo whose brightest speck of ink set the contrast, is brought up to that.
    return np.minimum(scaled * (1.0 / np.percentile(inked, 90)), 1.0)


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


STAGES = ("raw", "grayscale", "ink_on_black", "specks_removed", "cropped", "stroke_normalised", "scaled_20px",
          "centred_28px")


def preprocess_steps(image: ImageLike) -> dict[str, Image.Image | np.ndarray]:
    """Every stage, in the order of STAGES: "raw", "grayscale", "ink_on_black", ... "centred_28px".

    "raw" is the image as opened (a PIL image, or the array given); the others are float32 arrays in
    [0, 1]: "grayscale" as the image looks (at most WORK_SIZE px a side), the rest white ink on black.
    """
    name = source_name(image)
    raw = image if isinstance(image, (np.ndarray, torch.Tensor)) else open_image(image)
    gray, shrink = shrink_to_working_size(to_grayscale(raw, name), name)
    ink = ink_on_black(gray, name, shrink)
    strokes = remove_specks(ink)
    cropped = crop_to_ink(strokes)
    if strokes.sum() < MIN_INK_LENGTH * max(gray.shape):
        raise PreprocessError(f"{name} is blank, only a speck of ink was found: draw or photograph a digit.")
    redrawn = normalise_stroke(cropped)
    scaled = scale_longer_side(redrawn)
    return {"raw": raw, "grayscale": gray, "ink_on_black": ink, "specks_removed": strokes, "cropped": cropped,
            "stroke_normalised": redrawn, "scaled_20px": scaled, "centred_28px": centre_by_mass(scaled)}


def preprocess(image: ImageLike, mean: float, std: float) -> Preprocessed:
    """Any image-like (path, bytes, PIL image, 2-D or RGB(A) array) -> the model's normalized input."""
    digit = preprocess_steps(image)["centred_28px"]
    tensor = torch.from_numpy((digit - mean) * (1.0 / std)).view(1, 1, FIELD_SIZE, FIELD_SIZE)
    return Preprocessed(tensor=tensor, image=digit)
