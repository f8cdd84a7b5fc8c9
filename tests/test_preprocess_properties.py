"""Property test: whatever shape, dtype, mode or content an image has, `preprocess` returns the model's input
or raises PreprocessError with one sentence, never another exception or a warning."""

import warnings

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lenet.inference.preprocess import WORK_SIZE, PreprocessError, preprocess

# Sides where the steps change: a single pixel, a few, the working size and either side of its multiples
# (where shrinking starts, or leaves a side shorter than the shrink factor), and the 30,000.
EDGE_SIDES = [1, 2, 3, 4, 5, 7, 8, 28, 29, WORK_SIZE - 1, WORK_SIZE, WORK_SIZE + 1, 2 * WORK_SIZE - 1,
              2 * WORK_SIZE, 2 * WORK_SIZE + 1, 1000, 30_000]
THIN_SIDES = [1, 2, 3]
DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]
MODES = ["L", "LA", "RGB", "RGBA", "P", "I", "I;16", "F", "1", "CMYK"]
# Float pixels beyond any range a camera gives: they must be clipped, never propagate.
ODD_VALUES = [np.nan, np.inf, -np.inf, 1e300, -1e300, 1e30, 300.0, 70_000.0, -1.0]


def side(long: bool) -> st.SearchStrategy[int]:
    """A side length, an extreme one often: the long side of a strip, or any side of a small image."""
    if long:
        return st.one_of(st.sampled_from(EDGE_SIDES), st.integers(1, 30_000))
    return st.one_of(st.sampled_from(THIN_SIDES + EDGE_SIDES[:9]), st.integers(1, 600))


@st.composite
def shapes(draw) -> tuple[int, int]:
    """(height, width): half the time a strip 1-3 px across and up to 30,000 px long, either way round."""
    if draw(st.booleans()):
        thin, long = draw(st.sampled_from(THIN_SIDES)), draw(side(long=True))
        return (thin, long) if draw(st.booleans()) else (long, thin)
    return draw(side(long=False)), draw(side(long=False))


@st.composite
def pictures(draw) -> np.ndarray:
    """A float64 picture in [0, 1]: paper, a few strokes (bars at any place and size), optionally noise."""
    height, width = draw(shapes())
    paper = draw(st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1))
    picture = np.full((height, width), paper)
    for _ in range(draw(st.integers(0, 4))):
        top, left = draw(st.floats(0, 1)), draw(st.floats(0, 1))
        rows, cols = draw(st.floats(0, 1)), draw(st.floats(0, 1))
        row, col = int(top * (height - 1)), int(left * (width - 1))
        picture[row:row + 1 + int(rows * height), col:col + 1 + int(cols * width)] = draw(st.floats(0, 1))
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        picture = np.clip(picture + rng.normal(0, draw(st.floats(0, 0.5)), picture.shape), 0, 1)
    return picture


def as_dtype(picture: np.ndarray, dtype, odd: list[float], rng: np.random.Generator) -> np.ndarray:
    """The picture in `dtype`'s usual range; float arrays also get the `odd` values at random pixels."""
    if dtype == np.bool_:
        return picture > 0.5
    if dtype == np.int32:
        return (picture * 255).astype(np.int32) - 128 * (picture < 0.1)  # negative values too
    if np.issubdtype(dtype, np.integer):
        return (picture * np.iinfo(dtype).max).astype(dtype)
    pixels = picture.astype(dtype)
    for value in odd:
        with np.errstate(over="ignore"):  # 1e300 in a float32 array is inf
            pixels.flat[rng.integers(0, pixels.size, max(1, pixels.size // 50))] = value
    return pixels


def as_mode(picture: np.ndarray, mode: str) -> Image.Image:
    """The picture as a PIL image in `mode`, with some transparency where the mode has alpha."""
    eight_bit = (picture * 255).astype(np.uint8)
    if mode == "I":
        return Image.fromarray((picture * 1000).astype(np.int32) - 200)  # I holds any 32-bit int
    if mode == "I;16":
        return Image.fromarray((picture * 65535).astype(np.uint16))
    if mode == "F":
        return Image.fromarray((picture * 2 - 0.5).astype(np.float32))  # F holds any float, beyond [0, 1] too
    image = Image.fromarray(eight_bit).convert(mode)
    if "A" in mode:
        image.putalpha(Image.fromarray(255 - eight_bit))
    return image


@st.composite
def images(draw):
    """Any image-like `preprocess` accepts: a 2-D or (H, W, C) array of any dtype, a tensor, a PIL image."""
    picture = draw(pictures())
    kind = draw(st.sampled_from(["array", "channels", "tensor", "pil"]))
    if kind == "pil":
        return as_mode(picture, draw(st.sampled_from(MODES)))
    dtype = draw(st.sampled_from(DTYPES))
    odd = draw(st.lists(st.sampled_from(ODD_VALUES), max_size=3))
    pixels = as_dtype(picture, dtype, odd, np.random.default_rng(draw(st.integers(0, 2**32 - 1))))
    if kind == "channels":
        channels = draw(st.integers(1, 4))
        return np.stack([pixels] * channels, axis=2)
    if kind == "tensor" and dtype not in (np.uint16,):  # torch has no uint16 arithmetic worth testing
        return torch.from_numpy(pixels)
    return pixels


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(image=images(), mean=st.floats(-1, 1), std=st.floats(0.1, 2))
def test_preprocess_returns_a_finite_model_input_or_a_one_sentence_error(image, mean, std):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning from numpy is a step that saw what it did not expect
        try:
            result = preprocess(image, mean, std)
        except PreprocessError as error:
            message = str(error)
            assert message.endswith(".") and "\n" not in message, message
            return
    assert result.tensor.shape == (1, 1, 28, 28) and result.tensor.dtype == torch.float32
    assert torch.isfinite(result.tensor).all()
    assert result.image.shape == (28, 28) and 0.0 <= result.image.min() and result.image.max() <= 1.0
