"""In a real browser: JupyterLab runs the your-own-digits notebook up to its pad, the mouse draws digits on the
pad, the pad reads them; a pad made with `save_dir` saves a drawing under the digit button clicked; and a pad whose
model refuses the drawing says "that doesn't look like a digit".

Needs Playwright for Python and a Chromium on PATH (Debian: `apt-get install chromium`); Playwright's own
browser download is not used. Skips without them or without the real MNIST files. Leaves a screenshot in
artifacts/digit_pad.png (git-ignored).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from helpers import (CHROMIUM, CHROMIUM_ARGS, draw_on_canvas, free_port, real_mnist_dir, refusing_copy, serving_process,
                     wait_until)

ROOT = Path(__file__).resolve().parents[1]
# The notebook that ends with the pad, found by name so that renumbering the notebooks does not break the test.
NOTEBOOK = min((path.name for path in (ROOT / "notebooks").glob("[0-9]*_your_own_digits.ipynb")),
               default="NN_your_own_digits.ipynb")
SCREENSHOT = ROOT / "artifacts" / "digit_pad.png"

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed: "
                                     "pip install -e '.[dev]'")
pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium")]
# JupyterLab and a kernel on a loaded machine may take seconds to answer: assertions wait on the page up to this
# deadline instead of Playwright's 5 s, and pass as soon as the answer is there.
playwright_api.expect.set_options(timeout=30_000)


@pytest.fixture
def lab_root(tmp_path, mnist_checkpoint) -> Path:
    """A throwaway copy of the your-own-digits notebook whose model is a trained run copied into ../runs."""
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    # The notebook's cells up to the one that makes its model, then its pad: the lesson between them writes and
    # reads hundreds of image files, which the pad need not wait for. The model cell loads the test's trained run
    # instead of training one, so the page waits for the pad, not for a training.
    notebook = json.loads((ROOT / "notebooks" / NOTEBOOK).read_text(encoding="utf-8"))
    sources = ["".join(cell["source"]) if cell["cell_type"] == "code" else "" for cell in notebook["cells"]]
    model = next(i for i, source in enumerate(sources) if "load_model(" in source)
    pad = next(i for i, source in enumerate(sources) if "DigitPad(" in source and i > model)
    run = mnist_checkpoint.parents[1].name
    notebook["cells"][model]["source"] = [f"predictor = load_model('../runs/{run}/checkpoints/best.pt')\n"]
    notebook["cells"] = notebook["cells"][:model + 1] + [notebook["cells"][pad]]
    (root / "notebooks" / NOTEBOOK).write_text(json.dumps(notebook), encoding="utf-8")
    shutil.copytree(mnist_checkpoint.parents[1], root / "runs" / mnist_checkpoint.parents[1].name)
    return root


@contextlib.contextmanager
def serve_jupyter_lab(root: Path, home: Path, env: dict[str, str]) -> Iterator[tuple[str, str]]:
    """JupyterLab serving `root` on 127.0.0.1 with a token and settings kept under `home`; yields (url, token)."""
    port, token = free_port(), os.urandom(16).hex()
    # Render every cell eagerly, so the widget is in the DOM wherever it sits; no news toasts, no fetching.
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},
                "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}}
    for name, values in settings.items():
        path = home / "settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = {**os.environ, **env, "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
           "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython")}
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               "--ServerApp.terminals_enabled=False", f"--LabApp.user_settings_dir={home / 'settings'}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}", "--LabApp.news_url=None",
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")  # containers and CI images often run as root
    url = f"http://127.0.0.1:{port}"
    # Stopped with SIGTERM afterwards: jupyter shuts its kernels down on it.
    with serving_process(command, f"{url}/api/status?token={token}", home / "jupyter.log", env):
        yield url, token


@contextlib.contextmanager
def open_chromium(profile: Path):
    """A page in headless Chromium with a fresh profile at `profile`, closed afterwards whatever happens."""
    with playwright_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def jupyter_lab(lab_root, tmp_path):
    """(url, token) of JupyterLab serving lab_root, with LENET_DATA_DIR passed through."""
    with serve_jupyter_lab(lab_root, tmp_path / "jupyter-home", {"LENET_DATA_DIR": str(real_mnist_dir())}) as lab:
        yield lab


@pytest.fixture
def page(tmp_path):
    with open_chromium(tmp_path / "chromium-profile") as page:
        yield page


def has_idle_kernel(base: str, token: str) -> bool:
    """Whether a notebook session on the server has a started kernel that is idle."""
    with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as response:
        sessions = json.load(response)
    return any((session.get("kernel") or {}).get("execution_state") == "idle" for session in sessions)


def run_all_cells(page, base: str, token: str, notebook: str) -> None:
    """Open `notebook`, wait for its kernel, and run every cell from the Run menu, as a user would."""
    page.goto(f"{base}/lab/tree/{notebook}?token={token}")
    wait_until(lambda: has_idle_kernel(base, token), 60, "an idle notebook kernel")
    # The server's kernel is idle; wait for the page to be connected to it too.
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(state="attached", timeout=30_000)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()


SEVEN = [[(70, 50), (210, 50), (118, 246)]]  # pad coordinates (280 x 280)
FOUR = [[(84, 42), (70, 168), (210, 168)], [(174, 84), (174, 252)]]  # two strokes


def test_digits_drawn_with_the_mouse_in_jupyterlab_are_read_and_clear_resets(jupyter_lab, page):
    base, token = jupyter_lab
    expect = playwright_api.expect
    run_all_cells(page, base, token, f"notebooks/{NOTEBOOK}")

    pad = page.get_by_test_id("digit-pad")
    pad.wait_for(timeout=90_000)
    message, digit = pad.get_by_test_id("message"), pad.get_by_test_id("digit")
    expect(message).to_have_text("draw a digit")
    expect(pad.get_by_test_id("save")).to_be_hidden()  # no save_dir, no label buttons

    draw_on_canvas(page, pad.get_by_test_id("canvas"), SEVEN)
    expect(message).to_contain_text("it's a 7", timeout=15_000)
    expect(digit).to_have_text("7")
    expect(pad.get_by_test_id("model-input")).to_be_visible()
    expect(pad.locator(".lenet-bar.lenet-top .lenet-bar-label")).to_have_text("7")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    pad.screenshot(path=str(SCREENSHOT))

    pad.get_by_test_id("clear").click()
    expect(message).to_have_text("draw a digit", timeout=15_000)
    expect(digit).to_have_text("")
    expect(pad.get_by_test_id("model-input")).to_be_hidden()

    draw_on_canvas(page, pad.get_by_test_id("canvas"), FOUR)  # on the wiped canvas: nothing of the 7 is left
    expect(message).to_contain_text("it's a 4", timeout=15_000)


def test_a_label_button_saves_the_drawing_and_a_refusing_model_says_not_a_digit(lab_root, jupyter_lab, page):
    import nbformat  # a dependency of jupyterlab itself
    # A second pad below, with a model that answers "not a digit" to everything (helpers.refusing_copy).
    refusing_copy(next((lab_root / "runs").glob("*/checkpoints/best.pt")), lab_root / "refusing.pt")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        'from lenet.apps.pad import draw_and_predict\ndraw_and_predict(runs_dir="../runs", save_dir="my_digits")'),
        nbformat.v4.new_code_cell('draw_and_predict(checkpoint="../refusing.pt")')],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}})
    nbformat.write(notebook, lab_root / "notebooks" / "save_digits.ipynb")
    base, token = jupyter_lab
    expect = playwright_api.expect
    run_all_cells(page, base, token, "notebooks/save_digits.ipynb")

    pad, refusing = page.get_by_test_id("digit-pad").first, page.get_by_test_id("digit-pad").nth(1)
    pad.wait_for(timeout=90_000)
    saved = pad.get_by_test_id("save-message")
    pad.get_by_test_id("save-7").click()  # nothing drawn yet
    expect(saved).to_have_text("nothing saved: draw a digit first, then pick its label.", timeout=15_000)

    draw_on_canvas(page, pad.get_by_test_id("canvas"), SEVEN)
    expect(pad.get_by_test_id("message")).to_contain_text("it's a 7", timeout=15_000)
    pad.get_by_test_id("save-7").click()
    expect(saved).to_have_text("saved as my_digits/7/7_1.png", timeout=15_000)
    expect(pad.get_by_test_id("message")).to_have_text("draw a digit")  # wiped for the next drawing
    blank = pad.get_by_test_id("canvas").evaluate(
        "canvas => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.every(v => v === 255)")
    assert blank
    assert (lab_root / "notebooks" / "my_digits" / "7" / "7_1.png").is_file()

    # The third answer: the second pad's model refuses the drawing, and the pad says so instead of naming a digit.
    refusing.wait_for(timeout=90_000)
    refusing.scroll_into_view_if_needed()
    draw_on_canvas(page, refusing.get_by_test_id("canvas"), SEVEN)
    expect(refusing.get_by_test_id("message")).to_have_text("that doesn't look like a digit", timeout=15_000)
    expect(refusing.get_by_test_id("digit")).to_have_text("?")
