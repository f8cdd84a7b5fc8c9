"""The drawing pad's Python side, without a browser: what it shows for a drawing, a blank canvas and Clear."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import real_mnist_dir
from lenet.errors import LenetError
from lenet.predict import load_model, predict
from lenet.widgets import BLANK_MESSAGE, BRUSH_SIZE, CANVAS_SIZE, DigitPad, draw_and_predict


def canvas_png(image: Image.Image) -> bytes:
    """PNG bytes as the browser sends them: an opaque RGBA canvas, CANVAS_SIZE pixels square."""
    buffer = io.BytesIO()
    image.convert("RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


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
    assert pad.digit is None and pad.probabilities == [] and pad.model_input == []


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
    assert pad.model_input == (expected.image * 255).round().astype(int).ravel().tolist()
    assert len(pad.model_input) == 28 * 28 and max(pad.model_input) == 255
    assert pad.probabilities == pytest.approx(expected.probabilities, abs=1e-6)


def test_clear_goes_back_to_draw_a_digit_and_wipes_the_browser_canvas(pad, monkeypatch):
    sent = []
    monkeypatch.setattr(pad, "send", lambda content, buffers=None: sent.append(content))
    pad.show_drawing(strokes_on_canvas([[(140, 40), (140, 240)]]))
    assert pad.message != BLANK_MESSAGE and len(pad.probabilities) == 10
    pad.clear()
    assert pad.message == BLANK_MESSAGE
    assert pad.digit is None and pad.probabilities == [] and pad.model_input == []
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
