// lenet-serve's page: the pad from pad.js, given a stand-in for the notebook widget's model. The stand-in
// posts each drawing to POST /predict and turns the JSON answer into what the pad shows; drawing, layout
// and the look of the answer are all the pad's.

import pad from "./pad.js";

const BRUSH_SIZE = 20;  // canvas pixels: lenet.apps.pad.BRUSH_SIZE (tests/test_widgets.py checks they agree)
const BLANK = { message: "draw a digit", digit: null, probabilities: [], model_input: "" };

// The pad's reading of an answer from /predict, in the widget's words (lenet.apps.pad.DigitPad.show_drawing).
function reading(answer) {
  const probabilities = answer.probabilities;
  const top = probabilities.indexOf(Math.max(...probabilities));
  const percent = `${Math.round(100 * probabilities[top])}%`;
  return {
    digit: answer.prediction,
    probabilities,
    model_input: answer.image,
    message: answer.outcome === "not a digit" ? "that doesn't look like a digit"
      : answer.prediction === null ? `not sure: maybe a ${top} (${percent})` : `it's a ${top} (${percent} sure)`,
  };
}

// The part of anywidget's model the pad uses (get, on, off, send), answered by the server.
function serverModel() {
  let state = { ...BLANK, brush_size: BRUSH_SIZE, save_dir: "", save_message: "" };
  const listeners = { "change": new Set(), "msg:custom": new Set() };
  let latest = 0;  // the number of the latest drawing sent or Clear: answers to anything older are dropped

  function show(values) {
    state = { ...state, ...values };
    listeners.change.forEach((listener) => listener());
  }

  async function predict(png) {
    const mine = ++latest;
    let values;
    try {
      const response = await fetch("predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: png });
      const answer = await response.json();
      values = response.ok ? reading(answer) : { ...BLANK, message: answer.error };
    } catch {
      values = { ...BLANK, message: "no answer from the server: is lenet-serve still running?" };
    }
    if (mine === latest) show(values);
  }

  return {
    get: (name) => state[name],
    on: (event, listener) => listeners[event]?.add(listener),
    off: (event, listener) => listeners[event]?.delete(listener),
    send(content, callbacks, buffers) {
      if (content.type === "drawing") {
        predict(buffers[0]);
      } else if (content.type === "clear") {
        latest++;
        show(BLANK);
      }
    },
  };
}

pad.render({ model: serverModel(), el: document.getElementById("digit-pad") });
