"""Small things several test files need: images they draw, a killed run, a result shaped like fit's, a mouse on a
canvas, a wait with a deadline, a command run as a user runs it, a server in a subprocess on a free port and clients
that POST to it at once, and where the real MNIST files and a Chromium are."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Sequence, TypeVar

import torch
from PIL import Image, ImageDraw

from lenet.inference.images import png_bytes  # noqa: F401
from lenet.callbacks import Callback
from lenet.config import Config

T = TypeVar("T")

# Debian's chromium for the browser tests (Playwright cannot download its own browser here).
CHROMIUM = next((path for name in ("chromium", "chromium-browser", "google-chrome")
                 if (path := shutil.which(name))), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def real_mnist_dir() -> Path | None:
    """$LENET_DATA_DIR when it holds the official MNIST files, else None."""
    root = os.environ.get("LENET_DATA_DIR")
    if root and (Path(root) / "MNIST" / "raw" / "train-images-idx3-ubyte").exists():
        return Path(root)
    return None


def synthetic_digits(n: int, seed: int, random_labels: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """n 28x28 uint8 images where class k is a bright block at a class-specific place, jittered and noisy."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=generator)]
    images = torch.randint(0, 40, (n, 28, 28), generator=generator, dtype=torch.uint8)
    shifts = torch.randint(-2, 3, (n, 2), generator=generator)
    for i, (label, (dy, dx)) in enumerate(zip(labels.tolist(), shifts.tolist())):
        row, col = 4 + (label // 5) * 12 + dy, 3 + (label % 5) * 5 + dx
        images[i, max(row, 0):row + 8, max(col, 0):col + 4] = 255
    if random_labels:
        labels = torch.randint(0, 10, (n,), generator=generator)
    return images, labels


def refusing_copy(checkpoint: Path, path: Path) -> Path:
    """A copy of `checkpoint` whose refusal threshold is above any image's familiarity (a cosine similarity, at most
    1): it answers "not a digit" to everything, so the readers' third outcome can be driven deterministically (the
    detector itself is measured in tests/test_outliers.py and benchmarks/outlier_exposure.py)."""
    from lenet.checkpoint import load_checkpoint, save_checkpoint
    saved = load_checkpoint(checkpoint)
    return save_checkpoint({**saved, "refusal": {**saved["refusal"], "familiarity_below": 1e6}}, path)


def parse_config(argv: Sequence[str]) -> Config:
    """The Config `lenet-train ARGV` would train (it exits with a clear message on bad input)."""
    from lenet.cli.train import config_from_args, train_parser
    parser = train_parser()
    return config_from_args(parser.parse_args(argv), parser)


def wait_until(condition: Callable[[], T], timeout: float, what: str) -> T:
    """condition()'s first true value, polled until `timeout` s pass; AssertionError naming `what` after that."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:g} s")
        time.sleep(0.05)
    return value


def huge_png(side: int = 9_000) -> bytes:
    """An 8x8 PNG whose header claims side x side pixels, as a decompression bomb does."""
    png = png_bytes(Image.new("L", (8, 8), 255))
    fields = b"IHDR" + struct.pack(">II", side, side) + png[24:29]
    return png[:12] + fields + struct.pack(">I", zlib.crc32(fields)) + png[33:]


def seven(size: int = 280) -> Image.Image:
    """A black '7' on white, size x size, as a user might draw it."""
    image = Image.new("RGB", (size, size), "white")
    scale = size / 280
    ImageDraw.Draw(image).line([(90 * scale, 60 * scale), (190 * scale, 60 * scale), (120 * scale, 230 * scale)],
                               fill="black", width=max(1, round(18 * scale)))
    return image


def drawn_seven(path: Path, size: int = 280) -> Path:
    """seven(size) saved to path."""
    seven(size).save(path)
    return path


def fit_result(val_accuracies: Sequence[float], test_accuracy: float = 0.99, seconds: float = 2.0) -> dict:
    """A result shaped like fit's, with made-up losses: one history record per epoch."""
    history = [{"epoch": epoch, "train_loss": 1 / epoch, "val_loss": 0.5 / epoch, "val_accuracy": accuracy,
                "seconds": seconds} for epoch, accuracy in enumerate(val_accuracies, start=1)]
    return {"history": history, "test_accuracy": test_accuracy}


def run_module(module: str, *args, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m <module> ARGS` in a fresh process, as a user would run it (`timeout` only stops a hang)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


class StopAfter(Callback):
    """A `fit` callback that simulates a killed run: Ctrl+C right after a given epoch's checkpoints are written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, state) -> None:
        if state.epoch == self.epoch:
            raise KeyboardInterrupt


def draw_on_canvas(page, canvas, strokes: Sequence[Sequence[tuple[float, float]]], size: int = 280) -> None:
    """Drag the mouse along each stroke, given in the canvas's own pixels (0..size), inside its border."""
    canvas.scroll_into_view_if_needed()
    box, border = canvas.bounding_box(), canvas.evaluate("canvas => canvas.clientLeft")
    left, top, scale = box["x"] + border, box["y"] + border, (box["width"] - 2 * border) / size
    for stroke in strokes:
        (x, y), *rest = stroke
        page.mouse.move(left + x * scale, top + y * scale)
        page.mouse.down()
        for x, y in rest:
            page.mouse.move(left + x * scale, top + y * scale, steps=10)
        page.mouse.up()


def free_port() -> int:
    """A TCP port on loopback that nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers_200(url: str) -> bool:
    """Whether GET `url` answers 200 now."""
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status == 200
    except OSError:
        return False


@contextlib.contextmanager
def serving_process(command: Sequence[str], ready_url: str, log: Path | None = None, env: dict | None = None,
                    timeout: float = 60) -> Iterator[subprocess.Popen]:
    """`command` in a subprocess writing to `log`, yielded once `ready_url` answers 200 (AssertionError if it exits
    first or does not answer within `timeout` s); afterwards SIGTERM, and SIGKILL if it has not ended in 45 s."""
    with open(log or os.devnull, "wb") as output:
        process = subprocess.Popen(list(command), stdout=output, stderr=subprocess.STDOUT, env=env)

        def ready() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"{' '.join(command[:3])} exited with code {process.returncode} (log: {log})")
            return answers_200(ready_url)

        try:
            wait_until(ready, timeout, f"{ready_url} answering 200")
            yield process
        finally:
            process.terminate()  # terminate and kill do nothing once the process has ended
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=45)
            process.kill()
            process.wait()


@contextlib.contextmanager
def lenet_serve(checkpoint: Path, log: Path | None = None, args: Sequence[str] = ()
                ) -> Iterator[tuple[str, subprocess.Popen]]:
    """`python -m lenet.cli.serve --quiet` with extra flags `args` on a free loopback port, once /health answers;
    yields (its base URL, its process) and stops it afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "lenet.cli.serve", "--checkpoint", str(checkpoint), "--port", str(port),
               "--quiet", *args]
    with serving_process(command, f"{url}/health", log) as process:
        yield url, process


def post_concurrently(url: str, images: Sequence[bytes], requests: int, clients: int,
                      timeout: float = 120) -> list[tuple[int, int, dict]]:
    """POST `requests` PNGs (request n sends image n % len(images)) to url/predict from `clients` threads, each on
    its own keep-alive connection; one (image index, status, JSON answer) per request, status 0 and {"error": ...}
    for a connection error. `timeout` is per socket operation: it only stops a hung request."""
    host, port = url.removeprefix("http://").rsplit(":", 1)

    def client(first: int) -> list[tuple[int, int, dict]]:
        connection, answers = http.client.HTTPConnection(host, int(port), timeout=timeout), []
        for number in range(first, requests, clients):
            image = number % len(images)
            try:
                connection.request("POST", "/predict", body=images[image], headers={"Content-Type": "image/png"})
                response = connection.getresponse()
                body = response.read()
            except (OSError, http.client.HTTPException) as error:
                connection.close()  # the next request opens a fresh connection
                answers.append((image, 0, {"error": f"{type(error).__name__}: {error}"}))
                continue
            is_json = response.getheader("content-type", "").startswith("application/json")  # uvicorn's 503 is text
            answer = json.loads(body) if is_json else {"error": body.decode(errors="replace")}
            answers.append((image, response.status, answer))
        connection.close()
        return answers

    with ThreadPoolExecutor(clients) as pool:
        return [answer for answers in pool.map(client, range(clients)) for answer in answers]


def predicted_digits(model, images: Sequence[bytes]) -> list[int | None]:
    """What lenet.inference.predict answers for each image with `model` (a loaded checkpoint), in this process."""
    from lenet.inference.predict import as_json, predict
    return [as_json(None, answer)["prediction"] for answer in predict(model, list(images))]
