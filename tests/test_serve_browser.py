"""In a real browser: lenet-serve's page at / reads digits drawn with the mouse, and Clear resets it.

Needs Playwright for Python and a Chromium on PATH (Debian: `apt-get install chromium`); Playwright's own
browser download is not used. Skips without them or without the real MNIST files (a model trained on the
tiny synthetic data cannot read a drawn digit). Leaves a screenshot in artifacts/serve_page.png (git-ignored).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Sequence

import pytest

from conftest import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "artifacts" / "serve_page.png"

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed: "
                                     "pip install -e '.[dev]'")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev]'")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium")
expect = playwright_api.expect

ONE = [[(140, 50), (140, 230)]]  # pad coordinates (280 x 280): one vertical stroke
SEVEN = [[(85, 60), (195, 60), (125, 235)]]  # a bar and a diagonal, in one stroke


def load_test_script():
    """benchmarks/load_test.py as a module, for its `serving` helper."""
    if "load_test" not in sys.modules:
        spec = importlib.util.spec_from_file_location("load_test", ROOT / "benchmarks" / "load_test.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["load_test"] = module
        spec.loader.exec_module(module)
    return sys.modules["load_test"]


@pytest.fixture(scope="module")
def server_url(mnist_checkpoint, tmp_path_factory):
    """lenet-serve on a free loopback port with a model trained on real MNIST."""
    with load_test_script().serving(mnist_checkpoint, log=tmp_path_factory.mktemp("serve") / "serve.log") as url:
        yield url


@pytest.fixture(scope="module")
def page(server_url):
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 640})
            page.set_default_timeout(20_000)
            page.goto(f"{server_url}/")
            yield page
        finally:
            browser.close()


def draw(page, strokes: Sequence[Sequence[tuple[int, int]]]) -> None:
    """Draw each stroke on the pad with the mouse: press, move through its points, release."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / 280
    for stroke in strokes:
        x, y = stroke[0]
        page.mouse.move(box["x"] + x * scale, box["y"] + y * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=12)
        page.mouse.up()


def test_empty_pad_asks_for_a_digit(page):
    expect(page.locator("#status")).to_have_text("draw a digit")
    expect(page.locator("#digit")).to_have_text("")
    expect(page.locator("#input")).to_be_hidden()


def test_a_drawn_one_is_read_as_1_with_bars_and_the_models_input(page):
    draw(page, ONE)
    expect(page.locator("#digit")).to_have_text("1")
    expect(page.locator("#status")).to_contain_text("1 (")
    expect(page.locator(".bar.top .label")).to_have_text("1")
    expect(page.locator("#input")).to_be_visible()
    assert page.locator("#input").get_attribute("src").startswith("data:image/png;base64,")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_clear_resets_the_pad_and_the_answer(page):
    page.locator("#clear").click()
    expect(page.locator("#status")).to_have_text("draw a digit")
    expect(page.locator("#digit")).to_have_text("")
    expect(page.locator(".bar.top")).to_have_count(0)
    expect(page.locator("#input")).to_be_hidden()
    blank = page.evaluate("""() => {
        const pad = document.getElementById("pad");
        const pixels = pad.getContext("2d").getImageData(0, 0, pad.width, pad.height).data;
        return pixels.every(value => value === 255);
    }""")
    assert blank


def test_a_drawn_seven_is_read_as_7_after_clear(page):
    draw(page, SEVEN)
    expect(page.locator("#digit")).to_have_text("7")
