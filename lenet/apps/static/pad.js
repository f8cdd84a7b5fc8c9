// The drawing pad: a canvas, Clear, the model's answer and the 28x28 image it saw. One file for both hosts:
// the notebook widget (lenet/apps/pad.py; anywidget passes its synced model) and lenet-serve's page (page.js
// passes a stand-in that asks POST /predict). The pad decides nothing: it draws, sends the drawing, and
// shows what the model holds. Self-contained on purpose: anywidget loads it from a blob URL, so no imports.
//
// What the pad reads from the model:
//   message        the line under the digit
//   digit          the digit read, or null while blank or unsure
//   probabilities  10 numbers, or [] while blank
//   model_input    the 28x28 image the model saw, as a PNG data URL; "" while blank
//   brush_size     the pen's width in canvas pixels
//   save_dir       where labelled drawings go; "" hides the label buttons (the page never saves)
//   save_message   the line under the label buttons
// What it sends: {type: "drawing"} with the canvas PNG as its one buffer when a stroke ends,
// {type: "clear"} on Clear, {type: "save", label} on a label button. A {type: "clear"} message wipes it.

const SIZE = 280;  // canvas pixels, lenet.apps.pad.CANVAS_SIZE

function render({ model, el }) {
  el.classList.add("lenet-digit-pad");
  el.dataset.testid = "digit-pad";
  el.innerHTML = `
    <div class="lenet-pad-left">
      <canvas class="lenet-canvas" data-testid="canvas" width="${SIZE}" height="${SIZE}"
        aria-label="drawing pad: draw one digit"></canvas>
      <button class="lenet-clear" data-testid="clear" type="button">Clear</button>
      <div class="lenet-save" data-testid="save" hidden>
        <div class="lenet-save-labels" role="group" aria-label="save the drawing as the digit">
          <span>save as</span></div>
        <div class="lenet-save-message" data-testid="save-message" role="status" aria-live="polite"></div>
      </div>
    </div>
    <div class="lenet-pad-right">
      <div class="lenet-answer">
        <div class="lenet-digit" data-testid="digit" aria-hidden="true"></div>
        <div class="lenet-message" data-testid="message" role="status" aria-live="polite"></div>
      </div>
      <div class="lenet-bars" data-testid="probabilities" aria-label="probability of each digit"></div>
      <div class="lenet-seen">
        <img class="lenet-input" data-testid="model-input" alt="the 28x28 image the model saw" hidden>
        <span>what the model sees (28x28)</span>
      </div>
    </div>`;
  const canvas = el.querySelector(".lenet-canvas");
  const context = canvas.getContext("2d");
  const bars = el.querySelector(".lenet-bars");
  for (let k = 0; k < 10; k++) {
    bars.insertAdjacentHTML("beforeend", `<div class="lenet-bar" data-testid="bar-${k}">
      <span class="lenet-bar-label">${k}</span><span class="lenet-bar-track"><span class="lenet-bar-fill"></span></span>
      <span class="lenet-bar-value"></span></div>`);
  }
  const labels = el.querySelector(".lenet-save-labels");
  for (let k = 0; k < 10; k++) {
    labels.insertAdjacentHTML("beforeend",
      `<button type="button" data-testid="save-${k}" title="save this drawing as a ${k}">${k}</button>`);
  }
  labels.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (button) model.send({ type: "save", label: Number(button.textContent) });
  });

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
  function point(event) {  // in canvas pixels, measured from inside the border
    const box = canvas.getBoundingClientRect();
    return [(event.clientX - box.left - canvas.clientLeft) * SIZE / canvas.clientWidth,
            (event.clientY - box.top - canvas.clientTop) * SIZE / canvas.clientHeight];
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
    if (event.pointerType === "mouse" && event.button !== 0) return;  // the right button opens a menu
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    before = context.getImageData(0, 0, SIZE, SIZE);
    points = [point(event)];
    drawStroke();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (points === null) return;
    // A fast pen reports several positions per frame; taking them all keeps curves round.
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
    for (const each of events.length ? events : [event]) points.push(point(each));
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
  canvas.addEventListener("lostpointercapture", endStroke);

  el.querySelector(".lenet-clear").addEventListener("click", () => {
    wipe();
    model.send({ type: "clear" });
  });

  const input = el.querySelector(".lenet-input");
  function update() {
    el.classList.remove("lenet-busy");
    const digit = model.get("digit");
    const probabilities = model.get("probabilities");
    el.querySelector(".lenet-digit").textContent = digit === null ? (probabilities.length ? "?" : "") : digit;
    el.querySelector(".lenet-message").textContent = model.get("message");
    const top = probabilities.length ? probabilities.indexOf(Math.max(...probabilities)) : -1;
    bars.querySelectorAll(".lenet-bar").forEach((bar, k) => {
      const p = probabilities.length ? probabilities[k] : 0;
      bar.querySelector(".lenet-bar-fill").style.width = `${(100 * p).toFixed(1)}%`;
      bar.querySelector(".lenet-bar-value").textContent = probabilities.length ? `${(100 * p).toFixed(1)}%` : "";
      bar.classList.toggle("lenet-top", k === top);
    });
    const image = model.get("model_input");
    input.hidden = !image;
    if (image) input.src = image;
    el.querySelector(".lenet-save").hidden = !model.get("save_dir");
    el.querySelector(".lenet-save-message").textContent = model.get("save_message");
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
