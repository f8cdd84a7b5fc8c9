"""The drawing pad's Python side, without a browser: what it shows for a drawing, a blank canvas and Clear,
where it saves a labelled drawing, and that the widget and lenet-serve's page load the same pad files."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from helpers import real_mnist_dir
from lenet.errors import LenetError
from lenet.inference.images import png_bytes
from lenet.inference.predict import load_model, predict
from lenet.apps.pad import BLANK_MESSAGE, BRUSH_SIZE, CANVAS_SIZE, STATIC, DigitPad, draw_and_predict


def canvas_png(image: Image.Image) -> bytes:
    """PNG bytes as the browser sends them: an opaque RGBA canvas, CANVAS_SIZE pixels square."""
    return png_bytes(image.convert("RGBA"))


def mnist_on_canvas(digit: np.ndarray) -> bytes:
    """A 28x28 MNIST digit (white on black) as if drawn on the pad: 10x larger, black ink on white."""
    ink = Image.fromarray(255 - digit, mode="L")
    return canvas_png(ink.resize((CANVAS_SIZE, CANVAS_SIZE), Image.Resampling.BILINEAR))


def strokes_on_canvas(strokes: list[list[tuple[int, int]]]) -> bytes:
    """Polylines drawn with the pad's brush (black, round) on a white canvas."""
    image = Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), "white")
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        draw.line(stroke, fill="black", width=BRUSH_SIZE, joint="curve")
        for x, y in (stroke[0], stroke[-1]):  # round caps, like the canvas's lineCap = "round"
            draw.ellipse((x - BRUSH_SIZE / 2, y - BRUSH_SIZE / 2, x + BRUSH_SIZE / 2, y + BRUSH_SIZE / 2),
                         fill="black")
    return canvas_png(image)


def data_url_pixels(url: str) -> np.ndarray:
    """The grey levels of a data:image/png;base64 URL, as the browser would show them."""
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url[len(prefix):]))).convert("L"))


@pytest.fixture(scope="module")
def mnist_test_digits() -> list[tuple[np.ndarray, int]]:
    """The first 100 MNIST test images as uint8 (28, 28) arrays, with their labels."""
    root = real_mnist_dir()
    if root is None:
        pytest.skip("LENET_DATA_DIR does not hold the official MNIST files")
    from torchvision import datasets
    test = datasets.MNIST(str(root), train=False, download=False)
    return [(test.data[index].numpy(), int(test.targets[index])) for index in range(100)]


@pytest.fixture
def pad(tiny_checkpoint) -> DigitPad:
    return DigitPad(load_model(tiny_checkpoint))


def test_a_new_pad_asks_for_a_digit(pad):
    assert pad.message == BLANK_MESSAGE
    assert pad.digit is None and pad.probabilities == [] and pad.model_input == ""


@pytest.mark.parametrize("colour", ["white", "black"])
def test_a_blank_canvas_shows_draw_a_digit_rather_than_a_guess(pad, colour):
    pad.show_drawing(canvas_png(Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), colour)))
    assert pad.message == BLANK_MESSAGE
    assert pad.digit is None and pad.probabilities == []


def test_real_mnist_digits_drawn_on_the_pad_are_read_correctly(mnist_checkpoint, mnist_test_digits):
    pad = DigitPad(load_model(mnist_checkpoint))
    (seven, label), *_ = mnist_test_digits
    pad.show_drawing(mnist_on_canvas(seven))
    assert label == 7 and pad.digit == 7
    assert pad.message.startswith("it's a 7 (") and pad.message.endswith("% sure)")
    assert len(pad.probabilities) == 10 and sum(pad.probabilities) == pytest.approx(1.0, abs=1e-4)
    read = []
    for digit, label in mnist_test_digits:
        pad.show_drawing(mnist_on_canvas(digit))
        read.append(pad.digit == label)
    # The model scores about 98% on the test set; the drawing path must not lose much of that.
    assert sum(read) >= 95, f"only {sum(read)} of 100 test digits read correctly"


@pytest.mark.parametrize("label, strokes", [
    (1, [[(140, 40), (140, 240)]]),
    (7, [[(70, 50), (210, 50), (120, 240)]]),
    (0, [[(140, 40), (200, 80), (210, 150), (190, 220), (140, 245), (90, 220), (70, 150), (80, 80), (140, 40)]]),
])
def test_strokes_of_the_pads_brush_survive_the_shrink_to_28_pixels(mnist_checkpoint, label, strokes):
    pad = DigitPad(load_model(mnist_checkpoint))
    pad.show_drawing(strokes_on_canvas(strokes))
    assert pad.digit == label, pad.message


def test_the_pad_shows_exactly_the_image_the_model_sees(pad):
    drawing = strokes_on_canvas([[(70, 50), (210, 50), (120, 240)]])
    pad.show_drawing(drawing)
    (expected,) = predict(pad.predictor, [drawing])
    shown = data_url_pixels(pad.model_input)
    assert shown.shape == (28, 28) and shown.max() == 255
    np.testing.assert_array_equal(shown, (expected.image * 255).round().astype(np.uint8))
    assert pad.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_png_bytes_encodes_a_float_array_a_uint8_array_and_a_pil_image_alike():
    pixels = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    encodings = {png_bytes(pixels / 255), png_bytes(pixels), png_bytes(Image.fromarray(pixels))}
    assert len(encodings) == 1
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(encodings.pop()))), pixels)


def test_clear_goes_back_to_draw_a_digit_and_wipes_the_browser_canvas(pad, monkeypatch):
    sent = []
    monkeypatch.setattr(pad, "send", lambda content, buffers=None: sent.append(content))
    pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    assert pad.message != BLANK_MESSAGE and len(pad.probabilities) == 10
    pad.clear()
    assert pad.message == BLANK_MESSAGE
    assert pad.digit is None and pad.probabilities == [] and pad.model_input == ""
    assert sent == [{"type": "clear"}]


def test_messages_from_the_browser_update_the_pad(pad):
    # The path a real stroke takes: the browser sends the canvas PNG as a binary buffer when the pen lifts.
    pad._handle_custom_msg({"type": "drawing"}, [memoryview(strokes_on_canvas([[(140, 40), (140, 240)]]))])
    assert len(pad.probabilities) == 10 and pad.message != BLANK_MESSAGE
    pad._handle_custom_msg({"type": "clear"}, [])
    assert pad.message == BLANK_MESSAGE and pad.probabilities == []


def test_draw_and_predict_uses_the_newest_run(tiny_checkpoint):
    pad = draw_and_predict(runs_dir=tiny_checkpoint.parents[2])
    assert pad.predictor.checkpoint_path == tiny_checkpoint
    assert pad.message == BLANK_MESSAGE


def test_draw_and_predict_without_a_trained_model_says_to_train_first(tmp_path):
    with pytest.raises(LenetError, match="make train"):
        draw_and_predict(runs_dir=tmp_path / "runs")


def test_the_widget_and_lenet_serves_page_load_the_same_pad_files(pad):
    assert pad._esm == (STATIC / "pad.js").read_text(encoding="utf-8")
    assert pad._css == (STATIC / "pad.css").read_text(encoding="utf-8")
    page = (STATIC / "index.html").read_text(encoding="utf-8")
    assert re.search(r'<link rel="stylesheet" href="/?static/pad\.css">', page)
    assert re.search(r'<script type="module" src="/?static/page\.js">', page)
    assert 'import pad from "./pad.js";' in (STATIC / "page.js").read_text(encoding="utf-8")
    assert "<style" not in page and re.search(r"<script(?![^>]*\bsrc=)", page) is None  # nothing inline


def test_the_page_uses_the_widgets_brush_and_canvas_size():
    page_brush = re.search(r"^const BRUSH_SIZE = (\d+);", (STATIC / "page.js").read_text(encoding="utf-8"), re.M)
    canvas_size = re.search(r"^const SIZE = (\d+);", (STATIC / "pad.js").read_text(encoding="utf-8"), re.M)
    assert int(page_brush[1]) == BRUSH_SIZE and int(canvas_size[1]) == CANVAS_SIZE


@pytest.fixture
def saving_pad(tiny_checkpoint, tmp_path, monkeypatch) -> DigitPad:
    """A pad saving under tmp_path/mine, whose messages to the browser land in `pad.sent`."""
    pad = DigitPad(load_model(tiny_checkpoint), save_dir=tmp_path / "mine")
    pad.sent = []
    monkeypatch.setattr(pad, "send", lambda content, buffers=None: pad.sent.append(content))
    return pad


def test_a_pad_without_save_dir_hides_saving_and_refuses_to_save(pad, tmp_path, monkeypatch):
    assert pad.save_dir == ""  # the browser hides the label buttons
    monkeypatch.chdir(tmp_path)
    pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    assert pad.save_drawing(1) is None
    assert pad.save_message.startswith("nothing saved: ") and "save_dir=" in pad.save_message
    assert list(tmp_path.iterdir()) == []


def test_a_saved_drawing_lands_under_its_digit_and_reads_as_the_pad_read_it(saving_pad, tmp_path):
    drawing = strokes_on_canvas([[(70, 50), (210, 50), (120, 240)]])
    saving_pad.show_drawing(drawing)
    shown = saving_pad.probabilities
    path = saving_pad.save_drawing(7)
    assert path == tmp_path / "mine" / "7" / "7_1.png" and path.is_file()
    assert saving_pad.save_message == f"saved as {path}"
    # Scoring the saved file gives what the pad showed: the set is the learner's drawings, as drawn.
    (again,) = predict(saving_pad.predictor, [path])
    assert again.probabilities == pytest.approx(shown, abs=1e-6)
    # Saving wipes the pad for the next drawing, in Python and in the browser.
    assert saving_pad.message == BLANK_MESSAGE and saving_pad.probabilities == []
    assert saving_pad.sent == [{"type": "clear"}]


def test_saved_drawings_are_numbered_on_from_the_highest_file_there(saving_pad, tmp_path):
    folder = tmp_path / "mine" / "3"
    folder.mkdir(parents=True)
    (folder / "3_5.png").write_bytes(b"a drawing saved earlier")
    (folder / "notes.png").write_bytes(b"not one of the pad's")
    saved = []
    for label in (3, "3", 8):
        saving_pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
        saved.append(saving_pad.save_drawing(label))
    assert saved == [folder / "3_6.png", folder / "3_7.png", tmp_path / "mine" / "8" / "8_1.png"]
    assert (folder / "3_5.png").read_bytes() == b"a drawing saved earlier"


@pytest.mark.parametrize("label", [10, -1, "x", "", "77", None, True, 2.0])
def test_a_label_that_is_not_a_digit_saves_nothing_and_says_so(saving_pad, tmp_path, label):
    saving_pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    assert saving_pad.save_drawing(label) is None
    assert saving_pad.save_message == f"nothing saved: the label must be one digit from 0 to 9, not {label!r}."
    assert not (tmp_path / "mine").exists()
    assert saving_pad.probabilities != [] and saving_pad.sent == []  # the drawing is still there to label
    assert saving_pad.save_drawing(1) == tmp_path / "mine" / "1" / "1_1.png"


def test_saving_with_nothing_drawn_saves_nothing_and_says_so(saving_pad, tmp_path):
    assert saving_pad.save_drawing(4) is None
    saving_pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    saving_pad.clear()
    assert saving_pad.save_drawing(4) is None
    saving_pad.show_drawing(canvas_png(Image.new("RGB", (CANVAS_SIZE, CANVAS_SIZE), "white")))
    assert saving_pad.save_drawing(4) is None
    assert saving_pad.save_message == "nothing saved: draw a digit first, then pick its label."
    assert not (tmp_path / "mine").exists()


def test_a_folder_that_cannot_be_written_saves_nothing_and_says_so(tiny_checkpoint, tmp_path):
    (tmp_path / "a file").write_text("in the way of the folder")
    pad = DigitPad(load_model(tiny_checkpoint), save_dir=tmp_path / "a file")
    pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    assert pad.save_drawing(5) is None
    assert pad.save_message.startswith(f"nothing saved: cannot write into {tmp_path / 'a file' / '5'} (")
    assert pad.probabilities != []


def test_a_label_button_in_the_browser_saves_the_drawing(saving_pad, tmp_path):
    saving_pad._handle_custom_msg({"type": "drawing"}, [memoryview(strokes_on_canvas([[(140, 40), (140, 240)]]))])
    saving_pad._handle_custom_msg({"type": "save", "label": 1}, [])
    assert (tmp_path / "mine" / "1" / "1_1.png").is_file()
    assert saving_pad.save_message.startswith("saved as ")
    saving_pad._handle_custom_msg({"type": "drawing"}, [memoryview(strokes_on_canvas([[(140, 40), (140, 240)]]))])
    assert saving_pad.save_message == ""  # a new drawing starts a new line


def test_draw_and_predict_passes_save_dir_to_the_pad(tiny_checkpoint, tmp_path):
    pad = draw_and_predict(runs_dir=tiny_checkpoint.parents[2], save_dir=tmp_path / "mine")
    assert pad.save_dir == str(tmp_path / "mine")
