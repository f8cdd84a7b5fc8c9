import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import png_bytes
import torch
from PIL import Image, ImageDraw, ImageFilter

from lenet.errors import LenetError
from lenet.inference.preprocess import (MAX_PIXELS, PreprocessError, open_image, preprocess, preprocess_steps,
                                        remove_specks, to_grayscale)

STAGES = ["raw", "grayscale", "ink_on_black", "specks_removed", "cropped", "stroke_normalised", "scaled_20px",
          "centred_28px"]
# MNIST's pen, as `stroke_width` below measures it: the ink along a row across an MNIST '1', 5th to 95th
# percentile over its 6,742 training '1's (median 2.95 px). A '1' outside this range is unlike any MNIST showed.
MNIST_STROKE = (1.8, 4.8)


def drawn_digit(size=(160, 200), ink=0, paper=255, offset=(0, 0)) -> Image.Image:
    """A '4' drawn with thick lines, `ink` on `paper`, in mode L, placed at `offset` from the top left."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    x, y = offset
    draw.line([(x + 70, y + 20), (x + 25, y + 100), (x + 95, y + 100)], fill=ink, width=10)
    draw.line([(x + 75, y + 40), (x + 75, y + 145)], fill=ink, width=10)
    return image


def seen(image, mean=0.0, std=1.0) -> np.ndarray:
    """The 28x28 image the model would see."""
    return np.asarray(preprocess(image, mean, std).image)


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    return float((rows * image).sum() / image.sum()), float((cols * image).sum() / image.sum())


def ink_box(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of the smallest box around every pixel with ink."""
    rows, cols = np.flatnonzero(image.any(axis=1)), np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def with_header_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming width x height (a decompression bomb's header), CRC fixed."""
    ihdr = png[12:29]  # b"IHDR" + 13 bytes of fields
    fields = b"IHDR" + struct.pack(">II", width, height) + ihdr[12:]
    return png[:8] + png[8:12] + fields + struct.pack(">I", zlib.crc32(fields)) + png[33:]


def test_output_has_the_model_input_shape_dtype_and_range():
    result = preprocess(drawn_digit(), mean=0.0, std=1.0)
    assert result.tensor.shape == (1, 1, 28, 28) and result.tensor.dtype == torch.float32
    image = np.asarray(result.image)
    assert image.shape == (28, 28) and image.dtype == np.float32
    assert image.min() == 0.0 and image.max() == pytest.approx(1.0)


def test_normalization_uses_the_given_mean_and_std():
    result = preprocess(drawn_digit(), mean=0.2, std=0.4)
    expected = (torch.as_tensor(np.asarray(result.image)) - 0.2) / 0.4
    torch.testing.assert_close(result.tensor[0, 0], expected)
    assert result.tensor.min().item() == pytest.approx(-0.5)  # the black background


def test_black_on_white_and_white_on_black_give_the_same_result():
    black_on_white = seen(drawn_digit(ink=0, paper=255))
    white_on_black = seen(drawn_digit(ink=255, paper=0))
    np.testing.assert_allclose(black_on_white, white_on_black, atol=1e-6)
    assert black_on_white[0, 0] == 0.0  # the model sees white ink on black, like MNIST


def test_grey_paper_and_grey_ink_are_stretched_to_black_and_white():
    faint = seen(drawn_digit(ink=90, paper=200))
    np.testing.assert_allclose(faint, seen(drawn_digit()), atol=1e-5)


def test_an_off_centre_digit_is_centred_by_mass_with_its_longer_side_20px():
    image = seen(drawn_digit(size=(600, 500), offset=(10, 330)))  # far in the bottom-left corner
    row, col = centre_of_mass(image)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    height, width = ink_box(image)
    assert max(height, width) == 20


def test_a_tall_thin_stroke_stays_tall_and_thin():
    image = Image.new("L", (300, 300), 255)
    ImageDraw.Draw(image).rectangle([140, 40, 152, 240], fill=0)  # 13 x 201 px: a "1"
    height, width = ink_box(seen(image))
    assert height == 20
    assert width <= 3  # 13/201 of 20 px is 1.3 px; anti-aliasing may add a grey column


def test_scaling_is_anti_aliased_not_binarized():
    image = seen(drawn_digit())
    grey = ((image > 0.05) & (image < 0.95)).sum()
    assert grey >= 10  # stroke edges are grey, as in MNIST


def test_transparent_background_is_flattened_onto_white():
    reference = seen(drawn_digit())
    ink = np.asarray(drawn_digit(ink=255, paper=0))
    rgba = np.zeros((*ink.shape, 4), np.uint8)  # black everywhere, as drawing apps save transparency
    rgba[..., 3] = ink
    np.testing.assert_allclose(seen(Image.fromarray(rgba, "RGBA")), reference, atol=1e-5)
    np.testing.assert_allclose(seen(rgba), reference, atol=1e-5)  # the widget's numpy canvas


def test_white_ink_on_a_transparent_canvas_is_still_found():
    ink = np.asarray(drawn_digit(ink=255, paper=0))
    rgba = np.full((*ink.shape, 4), 255, np.uint8)
    rgba[..., 3] = ink
    np.testing.assert_allclose(seen(rgba), seen(drawn_digit()), atol=1e-5)


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    if mode == "I;16":
        return Image.fromarray(np.asarray(image).astype(np.uint16) * 257)  # full 16-bit range
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "I;16"])
def test_every_pixel_mode_gives_the_same_digit(mode):
    reference = drawn_digit()
    converted = to_mode(reference, mode)
    assert converted.mode == mode
    np.testing.assert_allclose(seen(converted), seen(reference), atol=1e-4)


@pytest.mark.parametrize("format_name, suffix, lossy", [
    ("PNG", ".png", False), ("JPEG", ".jpg", True), ("BMP", ".bmp", False),
    ("GIF", ".gif", False), ("WEBP", ".webp", True), ("TIFF", ".tiff", False),
])
def test_every_file_format_is_read(tmp_path, format_name, suffix, lossy):
    reference = drawn_digit()
    path = tmp_path / f"digit{suffix}"
    reference.convert("RGB").save(path, format=format_name)
    image, expected = seen(path), seen(reference)
    if lossy:  # compression noise moves a few grey levels, not the digit
        assert np.abs(image - expected).mean() < 0.02
        row, col = centre_of_mass(image)
        assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5
    else:
        np.testing.assert_allclose(image, expected, atol=1e-5)


def test_sixteen_bit_tiff_is_read(tmp_path):
    path = tmp_path / "digit16.tiff"
    to_mode(drawn_digit(), "I;16").save(path)
    assert open_image(path).mode.startswith("I;16")
    np.testing.assert_allclose(seen(path), seen(drawn_digit()), atol=1e-4)


def test_paths_bytes_and_arrays_give_the_same_result(tmp_path):
    reference = drawn_digit()
    path = tmp_path / "digit.png"
    reference.save(path)
    pixels = np.asarray(reference)
    expected = seen(reference)
    for source in (path, str(path), path.read_bytes(), pixels, pixels / 255.0, pixels.astype(np.float32) / 255):
        np.testing.assert_allclose(seen(source), expected, atol=1e-5)


def test_animated_gif_uses_its_first_frame(tmp_path):
    tall = Image.new("L", (100, 100), 255)
    ImageDraw.Draw(tall).rectangle([45, 10, 55, 90], fill=0)
    wide = tall.transpose(Image.Transpose.ROTATE_90)
    path = tmp_path / "animated.gif"
    tall.save(path, save_all=True, append_images=[wide], duration=100, loop=0)
    assert Image.open(path).n_frames == 2
    height, width = ink_box(seen(path))
    assert height == 20 and width < 10


def test_preprocess_steps_lists_every_stage_in_order():
    steps = preprocess_steps(drawn_digit(size=(200, 240), offset=(40, 60)))
    assert list(steps) == STAGES
    assert isinstance(steps["raw"], Image.Image)
    assert steps["grayscale"].shape == steps["ink_on_black"].shape == (240, 200)
    assert steps["grayscale"][0, 0] == 1.0 and steps["ink_on_black"][0, 0] == 0.0  # white paper, now black
    assert steps["cropped"].shape == ink_box(steps["specks_removed"]) != (240, 200)
    assert max(steps["stroke_normalised"].shape) >= 80  # redrawn at 4x the final size
    assert max(steps["scaled_20px"].shape) == 20
    np.testing.assert_array_equal(steps["centred_28px"], seen(drawn_digit(size=(200, 240), offset=(40, 60))))


def test_a_large_image_is_worked_on_at_most_256_px_a_side():
    steps = preprocess_steps(drawn_digit(size=(1600, 2000)))
    assert steps["grayscale"].shape == (250, 200)


def stroke_width(image: np.ndarray) -> float:
    """The width of a vertical stroke: the ink along each of the middle rows (median), in px."""
    rows = np.flatnonzero(image.any(axis=1))
    middle = image[rows[0] + 5:rows[-1] - 4]
    return float(np.median(middle.sum(axis=1)))


def vertical_line(canvas: int, width: int, length: int, ink: int = 0, paper: int = 255) -> Image.Image:
    """A '1': a vertical line `width` px wide and `length` px long in the middle of a square canvas."""
    image = Image.new("L", (canvas, canvas), paper)
    left, top = (canvas - width) // 2, (canvas - length) // 2
    ImageDraw.Draw(image).rectangle([left, top, left + width - 1, top + length - 1], fill=ink)
    return image


@pytest.mark.parametrize("canvas, width, length", [
    (400, 1, 300),  # a 1-px pen: shrunk to 20 px it would be 1/15 px wide
    (400, 30, 100),  # a fat marker on a short stroke: 6 px wide at 20 px
    (28, 1, 14),  # a 1-px line on a 28x28 canvas, as drawing apps save them: 1.4 px at 20 px
    (2400, 1, 1800),  # a 1-px pen on a huge canvas, which is shrunk first: faint, but still found
], ids=["1px-pen", "30px-marker", "28px-canvas", "2400px-canvas"])
def test_any_pen_becomes_an_mnist_stroke(canvas, width, length):
    image = seen(vertical_line(canvas, width, length))
    assert MNIST_STROKE[0] <= stroke_width(image) <= MNIST_STROKE[1]
    assert ink_box(image)[0] == 20  # still a '1' of full height
    assert image.max() == pytest.approx(1.0)  # the stroke's core is white, as MNIST's always is


def test_a_stroke_already_like_mnists_is_left_as_drawn():
    image = seen(vertical_line(400, 15, 120))  # 2.5 px at 20 px: MNIST's median pen
    assert stroke_width(image) == pytest.approx(2.5, abs=0.2)


def shadowed_photo(digit: Image.Image, seed: int = 0) -> np.ndarray:
    """`digit` (black on white) as a phone photo: a shadow darkens the paper from left to right (the right
    side's paper is darker than the left side's ink), light falls off towards the corners, and sensor noise."""
    ink = 1.0 - np.asarray(digit, np.float32) / 255
    height, width = ink.shape
    rows, cols = np.mgrid[0:height, 0:width]
    light = 0.95 - 0.6 * cols / width - 0.3 * ((rows / height - 0.5) ** 2 + (cols / width - 0.5) ** 2)
    photo = light * (1 - 0.7 * ink)  # ink reflects 30% of the light that falls on it
    photo += np.random.default_rng(seed).normal(0, 0.015, photo.shape)
    assert photo[:, -20:].mean() < photo[ink > 0.5][cols[ink > 0.5] < width / 2].mean() + 0.1  # a real shadow
    return np.clip(photo * 255, 0, 255).astype(np.uint8)


def test_a_shadowed_gradient_photo_yields_only_the_digits_ink():
    digit = drawn_digit(size=(240, 200), offset=(40, 20))
    steps = preprocess_steps(shadowed_photo(digit))
    strokes = np.asarray(digit) < 128
    near_strokes = np.asarray(Image.fromarray(strokes).filter(ImageFilter.MaxFilter(5)))
    kept = steps["specks_removed"] > 0
    assert kept[strokes].mean() > 0.9  # the digit's ink, all of it...
    assert not kept[~near_strokes].any()  # ...and nothing from the shadow, the vignette or the noise
    clean = seen(digit)
    assert np.abs(steps["centred_28px"] - clean).mean() < 0.03


def test_a_shadowed_gradient_photo_in_colour_as_a_jpeg_reads_like_the_clean_digit(tmp_path):
    digit = drawn_digit(size=(240, 200), offset=(40, 20))
    gray = shadowed_photo(digit, seed=1)
    tint = np.stack([gray, (gray * 0.9).astype(np.uint8), (gray * 0.7).astype(np.uint8)], axis=2)  # warm light
    Image.fromarray(tint).save(tmp_path / "photo.jpg", quality=80)
    assert np.abs(seen(tmp_path / "photo.jpg") - seen(digit)).mean() < 0.04


def test_isolated_specks_are_dropped():
    digit = drawn_digit(size=(200, 240), offset=(40, 40))
    speckled = digit.copy()
    draw = ImageDraw.Draw(speckled)
    for x, y in [(10, 10), (180, 15), (15, 200), (170, 220), (100, 225), (185, 120), (8, 120)]:
        draw.ellipse([x, y, x + 4, y + 4], fill=0)  # dust and pen dots around the digit
    steps = preprocess_steps(speckled)
    assert steps["cropped"].shape == preprocess_steps(digit)["cropped"].shape
    np.testing.assert_allclose(steps["centred_28px"], seen(digit), atol=1e-6)


def test_frame_lines_along_the_edges_are_dropped():
    digit = drawn_digit(size=(200, 240), offset=(40, 40))
    framed = digit.copy()
    draw = ImageDraw.Draw(framed)
    draw.rectangle([4, 4, 195, 235], outline=0, width=3)  # a drawn border
    draw.line([(0, 238), (199, 238)], fill=60, width=2)  # and the paper's edge below it
    np.testing.assert_allclose(seen(framed), seen(digit), atol=1e-6)


def test_a_digit_touching_the_image_edges_is_kept_whole():
    digit = drawn_digit(size=(200, 240), offset=(40, 40))
    strokes = np.asarray(digit) < 128
    rows, cols = np.flatnonzero(strokes.any(axis=1)), np.flatnonzero(strokes.any(axis=0))
    tight = digit.crop((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1))  # every side touches ink
    image = seen(tight)
    assert max(ink_box(image)) == 20
    assert np.abs(image - seen(digit)).mean() < 0.01


def test_a_stroke_running_from_edge_to_edge_is_not_taken_for_a_frame():
    one = Image.new("L", (120, 160), 255)
    ImageDraw.Draw(one).line([(60, 0), (60, 159)], fill=0, width=8)  # a '1' cropped at top and bottom
    height, width = ink_box(seen(one))
    assert height == 20 and width <= 5


def test_a_faint_pencil_stroke_attached_to_a_strong_one_is_kept():
    image = Image.new("L", (200, 200), 255)
    draw = ImageDraw.Draw(image)
    draw.line([(100, 20), (100, 180)], fill=0, width=8)  # pressed hard
    draw.line([(100, 20), (40, 80)], fill=170, width=8)  # the flag of a '1', drawn lightly
    steps = preprocess_steps(image)
    assert steps["specks_removed"][60, 60] > 0
    assert ink_box(steps["centred_28px"])[1] >= 8


def test_paper_texture_alone_is_blank():
    paper = np.clip(np.random.default_rng(0).normal(200, 4, (200, 200)), 0, 255).astype(np.uint8)
    with pytest.raises(PreprocessError, match="no ink found"):
        preprocess(paper, 0.0, 1.0)


def test_a_speck_on_blank_paper_is_no_digit_but_a_small_digit_is_one():
    paper = np.clip(np.random.default_rng(0).normal(235, 3, (200, 200)), 0, 255).astype(np.uint8)
    paper[120:122, 80:82] = 120  # two 2x2 specks of dust, far apart
    paper[30:32, 170:172] = 120
    with pytest.raises(PreprocessError, match="only a speck of ink was found"):
        preprocess(paper, 0.0, 1.0)
    small = Image.new("L", (200, 200), 235)
    ImageDraw.Draw(small).line([(96, 90), (104, 90), (99, 106)], fill=20, width=2)  # a 7 of 16 px
    assert ink_box(preprocess_steps(small)["centred_28px"])[0] >= 15


def test_a_line_whose_pixels_touch_only_at_corners_is_one_stroke_not_specks():
    ink = np.zeros((80, 80), np.float32)
    ink[np.arange(10, 70), np.arange(10, 70)] = 1.0  # a 1-px diagonal: 60 pixels, each a speck on its own
    np.testing.assert_array_equal(remove_specks(ink), ink)
    ink[40, 5] = ink[5, 40] = 1.0  # two specks beside it, diagonal to nothing
    kept = remove_specks(ink)
    assert kept[40, 5] == kept[5, 40] == 0.0 and kept[np.arange(10, 70), np.arange(10, 70)].all()


@pytest.mark.parametrize("blank", [
    Image.new("L", (50, 50), 255), Image.new("L", (50, 50), 0), Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
    np.full((40, 40), 128, np.uint8),
], ids=["white", "black", "transparent", "grey-array"])
def test_a_blank_image_has_no_ink_found(blank):
    with pytest.raises(PreprocessError, match="no ink found: draw or photograph a digit"):
        preprocess(blank, 0.0, 1.0)


@pytest.mark.parametrize("width, height", [(30_000, 3), (3, 30_000)], ids=["wide", "tall"])
def test_a_30000x3_drawn_line_is_too_thin_to_hold_a_digit(tmp_path, width, height):
    line = Image.new("L", (width, height), 255)
    ImageDraw.Draw(line).line([(0, 1), (width - 1, 1)] if width > height else [(1, 0), (1, height - 1)], fill=0)
    line.save(tmp_path / "line.png")  # as the user sent it: shrunk 118x, it is under 1 px across
    with pytest.raises(PreprocessError, match=rf"line\.png is {width}x{height} px: too thin to hold a digit "
                                              r"\(under 1 px across once shrunk to 256 px long\): crop it"):
        preprocess(tmp_path / "line.png", 0.0, 1.0)


@pytest.mark.parametrize("shape", [(1, 200), (200, 1)], ids=["1xN", "Nx1"])
def test_a_one_pixel_strip_holding_a_line_is_read_as_a_line(shape):
    strip = np.full(shape, 255, np.uint8).reshape(-1)
    strip[50:150] = 0
    image = seen(strip.reshape(shape))
    long, across = ink_box(image) if shape[0] > 1 else ink_box(image)[::-1]
    assert long == 20 and across <= 3  # a bar along the strip, as a '1' or a '-' is drawn


@pytest.mark.parametrize("shape", [(1, 2_000), (2_000, 1), (2, 600), (4, 4_096)])
def test_an_image_narrower_than_the_shrink_factor_is_too_thin_not_a_traceback(shape):
    image = np.full(shape, 255, np.uint8)
    image[tuple(side // 2 for side in shape)] = 0
    with pytest.raises(PreprocessError, match=rf"is {shape[1]}x{shape[0]} px: too thin to hold a digit"):
        preprocess(image, 0.0, 1.0)


@pytest.mark.parametrize("value", [0, 255])
def test_a_single_pixel_image_is_blank(value):
    with pytest.raises(PreprocessError, match="is blank, no ink found"):
        preprocess(Image.new("L", (1, 1), value), 0.0, 1.0)


def test_preprocess_error_is_a_lenet_error():
    assert issubclass(PreprocessError, LenetError)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(PreprocessError, match=r"absent\.png does not exist: check the path"):
        open_image(tmp_path / "absent.png")


def test_zero_byte_file_is_a_clear_error(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(PreprocessError, match=r"empty\.png is empty \(0 bytes\)"):
        open_image(tmp_path / "empty.png")


def test_text_file_named_png_is_a_clear_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image\n")
    with pytest.raises(PreprocessError, match=r"notes\.png is not an image Pillow can read"):
        open_image(tmp_path / "notes.png")


def test_truncated_image_is_a_clear_error(tmp_path):
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8)))
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(PreprocessError, match=r"cut\.png is truncated or corrupt"):
        open_image(tmp_path / "cut.png")


@pytest.mark.parametrize("side", [7_000, 20_000], ids=["over-our-limit", "pillow-decompression-bomb"])
def test_enormous_image_is_refused_before_decoding(tmp_path, side):
    assert side * side > MAX_PIXELS
    path = tmp_path / "huge.png"
    path.write_bytes(with_header_size(png_bytes(Image.new("L", (8, 8), 255)), side, side))
    with pytest.raises(PreprocessError, match=r"huge\.png is too large.*shrink it first"):
        open_image(path)


def test_enormous_in_memory_image_is_refused():
    with pytest.raises(PreprocessError, match="too large"):
        preprocess(with_header_size(png_bytes(Image.new("L", (8, 8), 255)), 9_000, 9_000), 0.0, 1.0)


def test_a_photo_stored_sideways_is_turned_upright_by_its_exif_orientation(tmp_path):
    upright = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(upright).rectangle([140, 20, 160, 180], fill=0)  # a tall "1"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90 degrees clockwise, as phones store portrait photos
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "photo.jpg", exif=exif)
    height, width = ink_box(seen(tmp_path / "photo.jpg"))
    assert height == 20 and width <= 4


def test_a_lab_tiff_is_read_by_its_lightness(tmp_path):
    digit = drawn_digit()
    lab = Image.merge("LAB", (digit, Image.new("L", digit.size, 128), Image.new("L", digit.size, 128)))
    lab.save(tmp_path / "digit.tiff")
    assert open_image(tmp_path / "digit.tiff").mode == "LAB"
    np.testing.assert_allclose(seen(tmp_path / "digit.tiff"), seen(digit), atol=1e-6)


def test_a_colour_mode_pillow_cannot_convert_is_one_clear_error(monkeypatch):
    def refuse(self, mode=None, *args, **kwargs):
        raise ValueError(f"conversion from {self.mode} to {mode} not supported")

    monkeypatch.setattr(Image.Image, "convert", refuse)
    with pytest.raises(PreprocessError, match=r"the image has the colour mode RGB, which cannot be converted to "
                                              r"grayscale \(conversion from RGB to L not supported\): save it as"):
        to_grayscale(Image.new("RGB", (8, 8)))


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")  # opening it for reading would block forever
    with pytest.raises(PreprocessError, match=r"pipe\.png is a FIFO \(named pipe\), not a digit image"):
        open_image(tmp_path / "pipe.png")


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero here")
def test_a_device_is_refused_rather_than_called_empty():
    with pytest.raises(PreprocessError, match=r"/dev/zero is a device, not a digit image"):
        open_image("/dev/zero")


def test_a_symbolic_link_loop_is_called_a_loop(tmp_path):
    (tmp_path / "a.png").symlink_to(tmp_path / "b.png")
    (tmp_path / "b.png").symlink_to(tmp_path / "a.png")
    with pytest.raises(PreprocessError, match=r"a\.png is a symbolic link loop"):
        open_image(tmp_path / "a.png")


def test_a_broken_symbolic_link_is_called_broken(tmp_path):
    (tmp_path / "digit.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(PreprocessError, match=r"digit\.png is a broken symbolic link"):
        open_image(tmp_path / "digit.png")


def test_a_folder_is_refused_as_a_folder(tmp_path):
    with pytest.raises(PreprocessError, match=r"is a folder, not an image: pass an image file"):
        open_image(tmp_path)


def test_a_large_jpeg_is_decoded_at_a_reduced_scale_still_above_the_working_size(tmp_path):
    drawn_digit(size=(2400, 1800)).convert("RGB").save(tmp_path / "photo.jpg")
    image = open_image(tmp_path / "photo.jpg")
    assert 256 <= max(image.size) < 2400
