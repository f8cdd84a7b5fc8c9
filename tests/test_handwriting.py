"""lenet.notebook.handwriting: a redrawn digit has the size, polarity, pen and place that were asked for."""

import numpy as np
from PIL import Image

from lenet.notebook.handwriting import PENS, redraw


def bar() -> Image.Image:
    """A 28x28 MNIST-like digit: a vertical bar of white ink, 3 px wide, on black."""
    pixels = np.zeros((28, 28), np.uint8)
    pixels[6:22, 12:15] = 255
    return Image.fromarray(pixels)


def ink(image: Image.Image, dark_on_light: bool = False) -> np.ndarray:
    pixels = np.asarray(image, dtype=float)
    return (255 - pixels if dark_on_light else pixels) > 127


def test_redraw_enlarges_and_keeps_white_on_black_unless_asked():
    image = redraw(bar())
    assert image.size == (280, 280) and image.mode == "L"
    assert ink(image)[60:220, 120:150].mean() > 0.9 and not ink(image)[:, :100].any()
    paper = redraw(bar(), dark_on_light=True)
    np.testing.assert_array_equal(ink(paper, dark_on_light=True), ink(image))


def test_pens_order_the_ink_from_thin_to_fat():
    amounts = [ink(redraw(bar(), pen)).sum() for pen in PENS]
    assert amounts == sorted(amounts) and len(set(amounts)) == len(PENS)


def test_a_small_digit_on_a_large_page_sits_at_the_corner_asked_for():
    image = redraw(bar(), size=100, page=400, corner=(0.6, 0.1))
    rows, columns = np.nonzero(ink(image))
    assert image.size == (400, 400)
    assert 240 <= columns.min() and columns.max() < 340 and 40 <= rows.min() and rows.max() < 140


def test_a_shadow_darkens_the_paper_towards_the_right_and_noise_is_seeded():
    image = np.asarray(redraw(bar(), dark_on_light=True, shadow=0.6), dtype=float)
    assert image[5, :20].mean() > 240 and image[5, -20:].mean() < 120
    noisy = [np.asarray(redraw(bar(), dark_on_light=True, noise=10, seed=seed)) for seed in (1, 1, 2)]
    assert np.array_equal(noisy[0], noisy[1]) and not np.array_equal(noisy[0], noisy[2])
