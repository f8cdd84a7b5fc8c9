"""Regenerate the figures in docs/ from the code, so that they cannot drift from it.

    .venv/bin/python docs/make_figures.py                      # every figure
    .venv/bin/python docs/make_figures.py architecture augmentation
    .venv/bin/python docs/make_figures.py tensorboard --run runs/notebooks/04-default

architecture.png            LeNet-5 drawn from `lenet.model.LeNet5` itself (`plot_architecture`: a dummy input run
                            through the model gives every shape and parameter count)
augmentation.png            one training digit under the default Config's augmentation (`plot_augmentations`,
                            which calls `lenet.data.augment`, the function training uses); needs the MNIST files
tensorboard_scalars.png,    TensorBoard itself showing a real run (by default notebook 04's, made when that
tensorboard_histograms.png  notebook runs), captured with headless Chromium (Debian: apt-get install chromium)

docs/digit_pad.png is the screenshot tests/test_browser.py leaves in artifacts/, copied by hand.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
DEFAULT_RUN = ROOT / "runs" / "notebooks" / "04-default"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
# What each screenshot shows: TensorBoard keeps its dashboard's state in the URL's fragment.
TENSORBOARD_VIEWS = {
    "tensorboard_scalars.png": {"dashboard": "scalars", "tagFilter": r"^(loss|accuracy)/|^learning_rate$",
                                "_smoothingWeight": "0"},
    "tensorboard_histograms.png": {"dashboard": "histograms", "tagFilter": r"^(weights|gradients)/(conv1|fc1)\.weight$"},
}
WIDTH = 1200  # px: the sidebar, every tab of the header, and two charts a row
FIGURES = ("architecture", "augmentation", "tensorboard")
CHART_ELEMENTS = {"scalars": "vz-line-chart2", "histograms": "vz-histogram-timeseries"}


def save(figure, name: str) -> None:
    path = DOCS / name
    figure.savefig(path, dpi=130, bbox_inches="tight", facecolor="white")
    print(f"wrote {path.relative_to(ROOT)}")


def make_architecture() -> None:
    """docs/architecture.png from lenet.model.LeNet5."""
    from lenet.model import LeNet5
    from lenet.notebook.plots import plot_architecture

    save(plot_architecture(LeNet5()), "architecture.png")


def make_augmentation(data_dir: str | None) -> None:
    """docs/augmentation.png: a training digit and 15 draws of the default Config's augmentation."""
    from lenet.config import Config
    from lenet.data import Augmentation, load_splits
    from lenet.notebook.plots import plot_augmentations

    config = Config()
    augmentation = Augmentation(config.max_shift, config.rotate, config.scale, config.shear, config.thicken,
                                config.thin)
    splits = load_splits(config.dataset, data_dir, config.val_size)
    digit = splits.train.images[(splits.train.labels == 2).nonzero()[0, 0]]  # the first 2 of the training split
    save(plot_augmentations(digit, augmentation, copies=15, seed=0), "augmentation.png")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.3) -> None:
    """Poll `condition` until it is true; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f} s")
        time.sleep(interval)


@contextlib.contextmanager
def tensorboard(run: Path) -> Iterator[str]:
    """TensorBoard serving `run` on 127.0.0.1 at a free port, stopped afterwards; yields its URL."""
    port = free_port()
    executable = Path(sys.executable).with_name("tensorboard")
    # Started beside the run and given its name only: TensorBoard prints the logdir in its sidebar, and a picture
    # for the docs should not show one machine's folders.
    server = subprocess.Popen([str(executable), "--logdir", run.name, "--port", str(port), "--host", "127.0.0.1"],
                              cwd=run.parent, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"

    def run_listed() -> bool:
        if server.poll() is not None:
            raise RuntimeError(f"tensorboard exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/data/runs", timeout=2) as response:
                return response.status == 200 and response.read().strip() not in (b"", b"[]")
        except OSError:
            return False

    try:
        wait_until(run_listed, 120, "TensorBoard listing the run")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# True once the first category of the dashboard holds `count` charts, each with a drawn curve (an SVG path).
CHARTS_DRAWN = """([element, count]) => {
    const deep = (root, selector) => [...root.querySelectorAll(selector),
        ...[...root.querySelectorAll('*')].filter(e => e.shadowRoot).flatMap(e => deep(e.shadowRoot, selector))];
    const category = deep(document, 'tf-category-paginated-view')[0];
    if (!category) return false;
    const charts = deep(category, element);
    const drawn = charts.filter(chart => deep(chart.shadowRoot || chart, 'path')
        .some(path => (path.getAttribute('d') || '').length > 10));
    return charts.length >= count && drawn.length >= count;
}"""
CATEGORY_BOTTOM = """() => {
    const deep = (root, selector) => [...root.querySelectorAll(selector),
        ...[...root.querySelectorAll('*')].filter(e => e.shadowRoot).flatMap(e => deep(e.shadowRoot, selector))];
    return deep(document, 'tf-category-paginated-view')[0].getBoundingClientRect().bottom;
}"""


def expected_charts(run: Path, view: dict[str, str]) -> int:
    """How many tags of the run the view's filter matches: the charts the screenshot must wait for."""
    import re

    from lenet.notebook.logs import read_histograms, read_scalars

    tags = read_scalars(run) if view["dashboard"] == "scalars" else read_histograms(run)
    return sum(bool(re.search(view["tagFilter"], tag)) for tag in tags)


def make_tensorboard(run: Path) -> None:
    """docs/tensorboard_scalars.png and docs/tensorboard_histograms.png: TensorBoard's own pages, showing `run`."""
    from playwright.sync_api import sync_playwright

    if not any(run.glob("events.out.tfevents.*")):
        sys.exit(f"{run} holds no TensorBoard event files: run notebooks/04_tensorboard.ipynb first (it trains "
                 "runs/notebooks/04-default), or pass --run with a run folder.")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("no chromium on PATH: install it (Debian: apt-get install chromium).")
    with tensorboard(run) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        try:
            for name, view in TENSORBOARD_VIEWS.items():
                # A fresh page each: a dashboard once shown stays in the page, hidden, and would be found first.
                page = browser.new_page(viewport={"width": WIDTH, "height": 1200})
                state = {key: value for key, value in view.items() if key != "dashboard"}
                page.goto(f"{url}/#{view['dashboard']}&{urllib.parse.urlencode(state, quote_via=urllib.parse.quote)}")
                count = expected_charts(run, view)
                page.wait_for_function(CHARTS_DRAWN, arg=[CHART_ELEMENTS[view["dashboard"]], count],
                                       timeout=120_000, polling=500)
                if view["dashboard"] == "scalars":  # whole curves: the default clips the first epochs' losses
                    page.get_by_text("Ignore outliers in chart scaling").click()
                page.wait_for_load_state("networkidle")
                bottom = page.evaluate(CATEGORY_BOTTOM)
                page.screenshot(path=str(DOCS / name), clip={"x": 0, "y": 0, "width": WIDTH, "height": bottom + 16})
                print(f"wrote {(DOCS / name).relative_to(ROOT)} ({count} charts of {run.name})")
                page.close()
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("figures", nargs="*", metavar="figure",
                        help="architecture, augmentation or tensorboard (default: all three)")
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN,
                        help="the run folder TensorBoard shows (default: runs/notebooks/04-default)")
    parser.add_argument("--data-dir", default=None, help="the MNIST folder (default: $LENET_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)
    figures = args.figures or list(FIGURES)
    unknown = sorted(set(figures) - set(FIGURES))
    if unknown:
        parser.error(f"unknown figure {', '.join(unknown)}: choose from {', '.join(FIGURES)}.")
    import matplotlib

    matplotlib.use("Agg")
    if "architecture" in figures:
        make_architecture()
    if "augmentation" in figures:
        make_augmentation(args.data_dir)
    if "tensorboard" in figures:
        make_tensorboard(args.run.resolve())


if __name__ == "__main__":
    main()
