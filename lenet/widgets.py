"""The drawing widget: draw a digit with mouse, pen or finger and watch LeNet-5 read it each time you lift.

`DigitPad(predictor)` shows a 280x280 canvas, a Clear button and the model's answer: the digit, a
bar chart of the 10 probabilities and the 28x28 image the model actually sees. `draw_and_predict()`
loads the newest checkpoint and returns one.

Why anywidget: the canvas is ~100 lines of plain ES-module JavaScript shipped inside this file, and
anywidget (a pip package with a prebuilt JupyterLab 4 extension) runs it in JupyterLab, Notebook 7,
VS Code and Colab with no `jupyter labextension` or npm build step. ipycanvas would also install from
pip, but it streams drawing commands and mouse events through the kernel one by one, so a stroke is as
smooth as the kernel is fast; here the browser draws locally and sends Python one PNG when a stroke ends.

The browser side is thin on purpose: everything that decides what is shown (blank or not, the
prediction, the message) happens in `DigitPad.show_drawing`, so tests drive it without a browser.
"""

from __future__ import annotations

import os
from typing import Any

import anywidget
import numpy as np
import traitlets

from lenet.preprocess import MIN_CONTRAST, ImageLike, PreprocessError, to_grayscale
from lenet.predict import Predictor, load_model, predict

BLANK_MESSAGE = "draw a digit"
CANVAS_SIZE = 280
# A 20 px brush on a 280 px canvas becomes a ~2 px stroke once the digit is scaled into MNIST's
# 20 px box: as thick as MNIST's own pen. Thinner strokes fade away in the shrink.
BRUSH_SIZE = 20

ESM = f"const SIZE = {CANVAS_SIZE};\n" + """
function render({ model, el }) {
  el.classList.add("lenet-digit-pad");
  el.dataset.testid = "digit-pad";
  el.innerHTML = `
    <div class="lenet-pad-left">
      <canvas class="lenet-canvas" data-testid="canvas" width="${SIZE}" height="${SIZE}"></canvas>
      <button class="lenet-clear" data-testid="clear" type="button">Clear</button>
    </div>
    <div class="lenet-pad-right">
      <div class="lenet-digit" data-testid="digit"></div>
      <div class="lenet-message" data-testid="message"></div>
      <div class="lenet-bars" data-testid="probabilities"></div>
      <div class="lenet-caption">what the model sees (28x28)</div>
      <canvas class="lenet-input" data-testid="model-input" width="28" height="28"></canvas>
    </div>`;
  const canvas = el.querySelector(".lenet-canvas");
  const context = canvas.getContext("2d");
  const bars = el.querySelector(".lenet-bars");
  for (let k = 0; k < 10; k++) {
    bars.insertAdjacentHTML("beforeend",
      `<div class="lenet-bar" data-testid="bar-${k}"><div class="lenet-bar-fill"></div><span>${k}</span></div>`);
  }

  // The canvas is filled white rather than left transparent, so the PNG is black ink on white.
  function wipe() {
    context.fillStyle = "white";
    context.fillRect(0, 0, SIZE, SIZE);
  }
  wipe();

  // The stroke in progress is redrawn whole from its points on every move, over a snapshot of the
  // canvas taken when it began: drawing it segment by segment would leave a bead at every joint.
  let points = null;
  let before = null;
  function point(event) {
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left) * SIZE / box.width, (event.clientY - box.top) * SIZE / box.height];
  }
  function drawStroke() {
    context.putImageData(before, 0, 0);
    context.strokeStyle = "black";
    context.lineWidth = model.get("brush_size");
    context.lineCap = "round";
    context.lineJoin = "round";
    context.beginPath();
    context.moveTo(...points[0]);
    for (const p of points) context.lineTo(...p);  // a single point still leaves a round dot
    context.stroke();
  }
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    before = context.getImageData(0, 0, SIZE, SIZE);
    points = [point(event)];
    drawStroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (points === null) return;
    points.push(point(event));
    drawStroke();
  });
  function endStroke() {
    if (points === null) return;
    points = before = null;
    el.classList.add("lenet-busy");
    canvas.toBlob(async (blob) => {
      model.send({ type: "drawing" }, undefined, [await blob.arrayBuffer()]);
    }, "image/png");
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  el.querySelector(".lenet-clear").addEventListener("click", () => {
    wipe();
    model.send({ type: "clear" });
  });

  const input = el.querySelector(".lenet-input").getContext("2d");
  function update() {
    el.classList.remove("lenet-busy");
    const digit = model.get("digit");
    const probabilities = model.get("probabilities");
    el.querySelector(".lenet-digit").textContent = digit === null ? (probabilities.length ? "?" : "") : digit;
    el.querySelector(".lenet-message").textContent = model.get("message");
    const top = probabilities.length ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    bars.querySelectorAll(".lenet-bar").forEach((bar, k) => {
      const p = probabilities.length ? probabilities[k] : 0;
      bar.querySelector(".lenet-bar-fill").style.height = `${Math.round(100 * p)}%`;
      bar.classList.toggle("lenet-top", k === top);
      bar.title = `${k}: ${(100 * p).toFixed(1)}%`;
    });
    const pixels = model.get("model_input");
    const image = input.createImageData(28, 28);
    for (let i = 0; i < 28 * 28; i++) {
      const grey = pixels.length ? pixels[i] : 0;
      image.data.set([grey, grey, grey, 255], 4 * i);
    }
    input.putImageData(image, 0, 0);
  }
  function onMessage(message) {
    if (message.type === "clear") wipe();
  }
  update();
  model.on("change", update);
  model.on("msg:custom", onMessage);
  return () => {
    model.off("change", update);
    model.off("msg:custom", onMessage);
  };
}

export default { render };
"""

CSS = """
.lenet-digit-pad { display: flex; gap: 24px; align-items: flex-start; padding: 4px;
  font-family: var(--jp-ui-font-family, sans-serif); color: var(--jp-content-font-color1, #222); }
.lenet-digit-pad .lenet-pad-left { display: flex; flex-direction: column; gap: 8px; align-items: flex-start; }
.lenet-digit-pad .lenet-canvas { width: 280px; height: 280px; border: 2px solid #888; border-radius: 4px;
  background: white; cursor: crosshair; touch-action: none; }
.lenet-digit-pad .lenet-clear { padding: 4px 16px; font-size: 14px; cursor: pointer; }
.lenet-digit-pad .lenet-pad-right { display: flex; flex-direction: column; gap: 8px; min-width: 240px; }
.lenet-digit-pad .lenet-digit { font-size: 64px; font-weight: bold; line-height: 1; min-height: 64px; }
.lenet-digit-pad .lenet-message { font-size: 16px; }
.lenet-digit-pad.lenet-busy .lenet-message { opacity: 0.5; }
.lenet-digit-pad .lenet-bars { display: flex; gap: 4px; align-items: flex-end; height: 110px; }
.lenet-digit-pad .lenet-bar { display: flex; flex-direction: column; justify-content: flex-end;
  align-items: center; width: 20px; height: 100%; }
.lenet-digit-pad .lenet-bar-fill { width: 100%; background: #9ab; min-height: 1px; }
.lenet-digit-pad .lenet-bar.lenet-top .lenet-bar-fill { background: #e66; }
.lenet-digit-pad .lenet-bar span { font-size: 12px; }
.lenet-digit-pad .lenet-caption { font-size: 12px; color: var(--jp-content-font-color2, #666); }
.lenet-digit-pad .lenet-input { width: 112px; height: 112px; image-rendering: pixelated; border: 1px solid #888; }
"""


class DigitPad(anywidget.AnyWidget):
    """A canvas to draw on, a Clear button and the model's answer, updated whenever a stroke ends."""

    _esm = ESM
    _css = CSS

    message = traitlets.Unicode(BLANK_MESSAGE).tag(sync=True)  # the line of text under the digit
    digit = traitlets.Int(None, allow_none=True).tag(sync=True)  # None while blank or unsure
    probabilities = traitlets.List(traitlets.Float()).tag(sync=True)  # 10 values, empty while blank
    model_input = traitlets.List(traitlets.Int()).tag(sync=True)  # 784 grey levels, white ink on black
    brush_size = traitlets.Int(BRUSH_SIZE).tag(sync=True)  # in canvas pixels
    readings = traitlets.Int(0).tag(sync=True)  # drawings read so far; a change tells the browser to redraw

    def __init__(self, predictor: Predictor, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.predictor = predictor
        self.on_msg(self._on_browser_message)

    def show_drawing(self, image: ImageLike) -> None:
        """Predict what the canvas holds (PNG bytes, PIL image, array...) and display it; blank -> "draw a digit"."""
        gray = to_grayscale(image)  # (H, W) in [0, 1]
        if np.ptp(gray) < MIN_CONTRAST:  # an empty canvas, whatever its colour
            self._show_blank()
            return
        try:
            (result,) = predict(self.predictor, [gray])
        except PreprocessError as error:  # a stroke too faint to count as ink
            self._show_blank(message=str(error))
            return
        probabilities = [float(p) for p in result.probabilities]
        top = int(np.argmax(probabilities))
        with self.hold_sync():
            self.digit = None if result.unsure else top
            self.probabilities = probabilities
            self.model_input = (np.asarray(result.image) * 255).round().clip(0, 255).astype(int).ravel().tolist()
            self.readings += 1
            self.message = (f"not sure: maybe a {top} ({probabilities[top]:.0%})" if result.unsure
                            else f"it's a {top} ({probabilities[top]:.0%} sure)")

    def clear(self) -> None:
        """Wipe the canvas and go back to "draw a digit"."""
        self._show_blank()
        self.send({"type": "clear"})

    def _show_blank(self, message: str = BLANK_MESSAGE) -> None:
        with self.hold_sync():
            self.digit = None
            self.probabilities = []
            self.model_input = []
            self.readings += 1
            self.message = message

    def _on_browser_message(self, widget: "DigitPad", content: dict[str, Any], buffers: list[memoryview]) -> None:
        if content.get("type") == "drawing" and buffers:
            self.show_drawing(bytes(buffers[0]))
        elif content.get("type") == "clear":
            self._show_blank()


def draw_and_predict(checkpoint: str | os.PathLike | None = None, runs_dir: str | os.PathLike = "runs") -> DigitPad:
    """A DigitPad for `checkpoint`, or for the best checkpoint of the newest run under `runs_dir`."""
    return DigitPad(load_model(checkpoint, runs_dir=runs_dir))
