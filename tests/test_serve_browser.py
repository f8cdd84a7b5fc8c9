"""In a real browser: lenet-serve's page at / reads digits drawn with the mouse, and Clear resets it.

The page is the notebook widget's pad (lenet/apps/static/pad.js and pad.css) with page.js asking /predict, so
it is found by the same test ids as in tests/test_browser.py.

Needs Playwright for Python and a Chromium on PATH (Debian: `apt-get install chromium`); Playwright's own
browser download is not used. Skips without them or without the real MNIST files (a model trained on the
tiny synthetic data cannot read a drawn digit). Leaves a screenshot in artifacts/serve_page.png (git-ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from helpers import CHROMIUM, CHROMIUM_ARGS, draw_on_canvas, lenet_serve, refusing_copy
from lenet.apps.pad import BRUSH_SIZE

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "artifacts" / "serve_page.png"

playwright_api = pytest.importorskip("playwright.sync_api", reason="Playwright for Python is not installed: "
                                     "pip install -e '.[dev]'")
pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev]'")
pytestmark = [pytest.mark.server, pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: apt-get install chromium")]
expect = playwright_api.expect
# A loaded machine (the suite beside other work) may answer a drawing in seconds: assertions wait on the page up to
# this deadline instead of Playwright's 5 s, and still pass as soon as the answer is there.
expect.set_options(timeout=30_000)

ONE = [[(140, 50), (140, 230)]]  # pad coordinates (280 x 280): one vertical stroke
SEVEN = [[(85, 60), (195, 60), (125, 235)]]  # a bar and a diagonal, in one stroke


@pytest.fixture(scope="module")
def server_url(mnist_checkpoint, tmp_path_factory):
    """lenet-serve on a free loopback port with a model trained on real MNIST."""
    with lenet_serve(mnist_checkpoint, log=tmp_path_factory.mktemp("serve") / "serve.log") as (url, _):
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


def test_empty_pad_asks_for_a_digit(page):
    expect(page.get_by_test_id("message")).to_have_text("draw a digit")
    expect(page.get_by_test_id("digit")).to_have_text("")
    expect(page.get_by_test_id("model-input")).to_be_hidden()
    expect(page.get_by_test_id("save")).to_be_hidden()  # the page never saves


def test_a_drawn_one_is_read_as_1_with_bars_and_the_models_input(page):
    draw_on_canvas(page, page.get_by_test_id("canvas"), ONE)
    expect(page.get_by_test_id("digit")).to_have_text("1")
    expect(page.get_by_test_id("message")).to_contain_text("it's a 1 (")
    expect(page.locator(".lenet-bar.lenet-top .lenet-bar-label")).to_have_text("1")
    expect(page.get_by_test_id("model-input")).to_be_visible()
    assert page.get_by_test_id("model-input").get_attribute("src").startswith("data:image/png;base64,")
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))


def test_a_stroke_is_one_even_line_as_wide_as_the_widgets_brush(page):
    # A vertical line off the pixel grid, so its edges are anti-aliased. Drawn as one path, every row across
    # its middle is the same; drawn segment by segment, the round ends overlapping at each joint would
    # darken the edges there (a bead at every joint).
    draw_on_canvas(page, page.get_by_test_id("canvas"), [[(40.5, 40), (40.5, 240)]])
    expect(page.get_by_test_id("digit-pad")).not_to_have_class(re.compile(r"\blenet-busy\b"))  # answered
    rows = page.get_by_test_id("canvas").evaluate("""canvas => {
        const context = canvas.getContext("2d");
        const rows = [];
        for (let y = 60; y < 220; y++) {
            rows.push(Array.from(context.getImageData(0, y, 80, 1).data.filter((_, i) => i % 4 === 0)));
        }
        return rows;
    }""")
    assert any(0 < value < 255 for value in rows[0])  # edges are grey: the test can see a bead
    assert all(row == rows[0] for row in rows)
    assert abs(sum(255 - value for value in rows[0]) / 255 - BRUSH_SIZE) < 1  # the ink across one row


def test_clear_resets_the_pad_and_the_answer(page):
    page.get_by_test_id("clear").click()
    expect(page.get_by_test_id("message")).to_have_text("draw a digit")
    expect(page.get_by_test_id("digit")).to_have_text("")
    expect(page.locator(".lenet-bar.lenet-top")).to_have_count(0)
    expect(page.get_by_test_id("model-input")).to_be_hidden()
    blank = page.get_by_test_id("canvas").evaluate(
        "canvas => canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data.every(v => v === 255)")
    assert blank


def test_a_drawn_seven_is_read_as_7_after_clear(page):
    draw_on_canvas(page, page.get_by_test_id("canvas"), SEVEN)
    expect(page.get_by_test_id("digit")).to_have_text("7")


def test_a_model_that_refuses_the_drawing_says_it_does_not_look_like_a_digit(page, mnist_checkpoint, tmp_path):
    refusing = refusing_copy(mnist_checkpoint, tmp_path / "refusing.pt")
    with lenet_serve(refusing, log=tmp_path / "serve.log") as (url, _):
        other = page.context.browser.new_page(viewport={"width": 900, "height": 640})  # the module's browser
        try:
            other.goto(f"{url}/")
            draw_on_canvas(other, other.get_by_test_id("canvas"), SEVEN)
            expect(other.get_by_test_id("message")).to_have_text("that doesn't look like a digit")
            expect(other.get_by_test_id("digit")).to_have_text("?")  # no digit claimed; the bars still show
            expect(other.locator(".lenet-bar.lenet-top")).to_have_count(1)
        finally:
            other.close()
