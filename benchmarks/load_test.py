"""Load test for lenet-serve: many POST /predict requests from concurrent clients on loopback.

    python benchmarks/load_test.py                    # 2,000 requests from 8 clients to a server it starts
    python benchmarks/load_test.py --checkpoint runs/<run>/checkpoints/best.pt --requests 500
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --checkpoint runs/<run>/checkpoints/best.pt
                                                      # a server that is already running, serving that checkpoint

The images are MNIST test digits drawn black on white at 112x112 px (as a user would upload them) when
$LENET_DATA_DIR holds MNIST, else two drawn digits. Every answer is checked against lenet.inference.predict run
in this process on the same image with the same checkpoint. Prints requests/s and p50/p99 latency;
exits 1 on any error, busy answer (503) or wrong answer. Bounded in count and in time: it stops by itself.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import http.client
import json
import itertools
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from lenet.inference.images import png_bytes  # noqa: E402


@dataclass
class LoadResult:
    """What the clients saw: one latency per answered request, the answers by image, and every failure.

    A 503 (the server is busy and says so) is counted in `statuses` and `busy`, not as an error.
    """

    requests: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    predictions: list[tuple[int, int | None]] = field(default_factory=list)  # (image index, predicted digit)
    errors: list[str] = field(default_factory=list)
    statuses: collections.Counter = field(default_factory=collections.Counter)  # HTTP status: how many

    @property
    def busy(self) -> int:
        return self.statuses[503]

    def percentile(self, q: float) -> float:
        """The q-th percentile latency in ms (nearest rank)."""
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]

    def summary(self, clients: int) -> str:
        return (f"{self.requests} requests from {clients} clients in {self.seconds:.1f} s: "
                f"{self.requests / self.seconds:.0f} requests/s, latency p50 {self.percentile(50):.1f} ms, "
                f"p99 {self.percentile(99):.1f} ms, mean {statistics.fmean(self.latencies_ms):.1f} ms, "
                f"{self.busy} busy (503), {len(self.errors)} errors")


def mnist_digit_pngs(count: int, data_dir: str | os.PathLike | None = None, side: int = 112) -> list[tuple[bytes, int]]:
    """(PNG bytes, label) for the first `count` MNIST test digits, black ink on white, `side` px square."""
    from lenet.data import load_torchvision_dataset
    test_set = load_torchvision_dataset("mnist", data_dir, train=False, download=False)
    return [(png_bytes(ImageOps.invert(Image.fromarray(test_set.data[index].numpy()))
                       .resize((side, side), Image.Resampling.LANCZOS)), int(test_set.targets[index]))
            for index in range(count)]


def drawn_digit_pngs() -> list[tuple[bytes, int]]:
    """(PNG bytes, label) for a drawn 7 and a drawn 1, black on white: when MNIST is not at hand."""
    seven, one = Image.new("L", (280, 280), 255), Image.new("L", (280, 280), 255)
    ImageDraw.Draw(seven).line([(90, 60), (190, 60), (120, 230)], fill=0, width=18)
    ImageDraw.Draw(one).line([(140, 50), (140, 230)], fill=0, width=18)
    return [(png_bytes(seven), 7), (png_bytes(one), 1)]


def test_images(count: int = 50) -> list[tuple[bytes, int]]:
    """MNIST test digits if $LENET_DATA_DIR (or ./data) holds MNIST (never downloaded here), else drawn digits."""
    from lenet.errors import LenetError
    try:
        return mnist_digit_pngs(count)
    except LenetError:
        return drawn_digit_pngs()


test_images.__test__ = False  # a helper, not a pytest test


def expected_predictions(checkpoint: str | os.PathLike, images: Sequence[bytes]) -> list[int | None]:
    """What lenet.inference.predict answers for each image with this checkpoint, in this process."""
    from lenet.inference.predict import as_json, load_model, predict
    return [as_json(None, answer)["prediction"] for answer in predict(load_model(checkpoint), list(images))]


def free_port() -> int:
    """A TCP port on loopback that nobody is listening on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def serving(checkpoint: str | os.PathLike, log: Path | None = None, timeout: float = 60,
            args: Sequence[str] = ()) -> Iterator[str]:
    """`lenet-serve --quiet` on a free loopback port in a subprocess; yields its base URL, stops it afterwards."""
    with server_process(checkpoint, log, timeout, args) as (url, _):
        yield url


@contextlib.contextmanager
def server_process(checkpoint: str | os.PathLike, log: Path | None = None, timeout: float = 60,
                   args: Sequence[str] = ()) -> Iterator[tuple[str, subprocess.Popen]]:
    """As `serving`, with extra lenet-serve flags `args`; yields (base URL, the server's process)."""
    port = free_port()
    with open(log or os.devnull, "wb") as output:
        server = subprocess.Popen([sys.executable, "-m", "lenet.cli.serve", "--checkpoint", str(checkpoint),
                                   "--port", str(port), "--quiet", *args], stdout=output, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_healthy(url, server, timeout)
            yield url, server
        finally:
            stop(server)


def stop(server: subprocess.Popen, timeout: float = 45) -> None:
    """SIGTERM, and SIGKILL if the server has not finished within `timeout` s."""
    if server.poll() is None:
        server.terminate()
    try:
        server.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def wait_until_healthy(url: str, server: subprocess.Popen, timeout: float) -> None:
    """Poll GET /health until it answers 200; fail early if the server process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"lenet-serve exited with code {server.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"lenet-serve did not answer {url}/health within {timeout:.0f} s")


def run_load(url: str, images: Sequence[bytes], requests: int = 2000, clients: int = 8,
             time_limit: float = 300) -> LoadResult:
    """POST `requests` images (cycling through `images`) from `clients` threads, each with a keep-alive connection.

    Stops after `requests` requests or `time_limit` seconds, whichever comes first; a request still
    unsent at the time limit is counted as an error.
    """
    host, port = split_url(url)
    result = LoadResult()
    counter, lock = itertools.count(), threading.Lock()
    deadline = time.monotonic() + time_limit

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=30)  # kept alive between requests
        try:
            while True:
                with lock:
                    number = next(counter)
                if number >= requests:
                    return
                if time.monotonic() > deadline:
                    with lock:
                        result.errors.append(f"request {number}: not sent, the {time_limit:.0f} s limit passed")
                    continue
                image = number % len(images)
                start = time.perf_counter()
                try:
                    status, answer = post_image(connection, images[image])
                except (OSError, http.client.HTTPException, ValueError) as error:
                    connection.close()  # the next request opens a fresh connection
                    with lock:
                        result.errors.append(f"request {number}: {type(error).__name__}: {error}")
                    continue
                elapsed = (time.perf_counter() - start) * 1000
                with lock:
                    result.statuses[status] += 1
                    if status == 503:
                        continue
                    if status != 200:
                        result.errors.append(f"request {number}: {status} {answer.get('error')}")
                    else:
                        result.latencies_ms.append(elapsed)
                        result.predictions.append((image, answer["prediction"]))
        finally:
            connection.close()

    threads = [threading.Thread(target=client, name=f"client-{index}") for index in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    result.seconds = time.perf_counter() - start
    result.requests = len(result.latencies_ms)
    return result


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an http:// base URL."""
    host, _, port = url.removeprefix("http://").rstrip("/").rpartition(":")
    return host, int(port)


def post_image(connection: http.client.HTTPConnection, image: bytes) -> tuple[int, dict]:
    """POST one PNG to /predict on an open connection; (status, JSON answer).

    uvicorn's own 503 past --max-connections is plain text: it comes back as {"error": <the text>}.
    """
    connection.request("POST", "/predict", body=image, headers={"Content-Type": "image/png"})
    response = connection.getresponse()
    body = response.read()
    if response.getheader("content-type", "").startswith("application/json"):
        return response.status, json.loads(body)
    return response.status, {"error": body.decode("utf-8", "replace")}


def warm_up(url: str, images: Sequence[bytes]) -> None:
    """One untimed request per image, so that first-call costs (imports, allocations) stay out of the numbers."""
    connection = http.client.HTTPConnection(*split_url(url), timeout=30)
    for image in images:
        post_image(connection, image)
    connection.close()


def wrong_answers(result: LoadResult, expected: Sequence[int | None]) -> list[str]:
    """One line per answer that differs from lenet.inference.predict's answer for the same image."""
    return [f"image {image}: server said {got}, lenet.inference.predict says {expected[image]}"
            for image, got in result.predictions if got != expected[image]]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Load-test lenet-serve on loopback and print latency and throughput.")
    parser.add_argument("--url", default=None,
                        help="a running server's base URL (default: start lenet-serve on a free loopback port)")
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint the server serves, which the answers are checked against "
                             "(default: best.pt of the newest completed run in runs/)")
    parser.add_argument("--requests", type=int, default=2000, help="how many requests in all (default: 2000)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients, one thread each (default: 8)")
    parser.add_argument("--time-limit", type=float, default=300,
                        help="stop sending after this many seconds (default: 300)")
    args = parser.parse_args(argv)

    from lenet.runs import default_checkpoint
    labelled = test_images()
    images = [image for image, _ in labelled]
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint("runs")
    with contextlib.ExitStack() as stack:
        url = args.url.rstrip("/") if args.url else stack.enter_context(serving(checkpoint))
        expected = expected_predictions(checkpoint, images)
        print(f"server {url}, checkpoint {checkpoint}, {len(images)} distinct images")
        warm_up(url, images)
        result = run_load(url, images, args.requests, args.clients, args.time_limit)
    wrong = wrong_answers(result, expected)
    correct_labels = sum(got == labelled[image][1] for image, got in result.predictions)
    print(result.summary(args.clients))
    print(f"{len(result.predictions) - len(wrong)}/{len(result.predictions)} answers equal lenet.inference.predict's; "
          f"{correct_labels}/{len(result.predictions)} equal the true label")
    for line in (result.errors + wrong)[:10]:
        print(f"  {line}")
    return 1 if result.errors or wrong or result.requests < args.requests else 0


if __name__ == "__main__":
    sys.exit(main())
