import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lenet.errors import LenetError
from lenet.preprocess import MAX_PIXELS, PreprocessError, open_image, preprocess, preprocess_steps

STAGES = ["raw", "grayscale_inverted", "cropped", "scaled_20px", "centred_28px"]


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


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    steps = preprocess_steps(drawn_digit(size=(300, 300), offset=(100, 60)))
    assert list(steps) == STAGES
    assert isinstance(steps["raw"], Image.Image)
    assert steps["grayscale_inverted"].shape == (300, 300)
    assert steps["cropped"].shape == ink_box(steps["grayscale_inverted"]) != (300, 300)
    assert max(steps["scaled_20px"].shape) == 20
    np.testing.assert_array_equal(steps["centred_28px"], seen(drawn_digit(size=(300, 300), offset=(100, 60))))


@pytest.mark.parametrize("blank", [
    Image.new("L", (50, 50), 255), Image.new("L", (50, 50), 0), Image.new("RGBA", (50, 50), (0, 0, 0, 0)),
    np.full((40, 40), 128, np.uint8),
], ids=["white", "black", "transparent", "grey-array"])
def test_a_blank_image_has_no_ink_found(blank):
    with pytest.raises(PreprocessError, match="no ink found: draw or photograph a digit"):
        preprocess(blank, 0.0, 1.0)


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
