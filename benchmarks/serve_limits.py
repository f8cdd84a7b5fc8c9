"""Loopback checks of lenet-serve's limits (issue 12): memory, timeouts, load and graceful shutdown.

    python benchmarks/serve_limits.py                          # every check, on best.pt of the newest run in runs/
    python benchmarks/serve_limits.py --checkpoint runs/<run>/checkpoints/best.pt --only memory,shutdown

Each check starts its own `lenet-serve` on a free 127.0.0.1 port (default settings, or --serve-flags) and
stops it:

  memory     16 concurrent POSTs of a 6300x6300 RGBA PNG (about 180 KB, 160 MB once decoded) while /health
             is polled; then 16 concurrent images just under the pixel cap, which are decoded. Prints the
             server's peak and final resident memory (VmHWM, VmRSS: Linux only).
  timeouts   a client that sends a POST's headers and then nothing, one that sends half a request line,
             and one that sends nothing: how long each stays connected, and what it is told.
  load       --requests POSTs of small digits from --clients concurrent keep-alive clients: the status
             codes (only 200 and 503 are expected) and that every 200 equals lenet.inference.predict's answer.
  shutdown   6 requests whose bodies arrive slowly; SIGTERM once they are under way: their status codes,
             whether new connections are refused meanwhile, how long the server takes to exit, and
             whether its log holds a traceback.

Prints what it measures and exits 1 if a figure misses its target (peak memory 1.5 GB, disconnected within
30 s, only 200s and 503s, 200 for all 6). Bounded: every wait has a time limit, so it stops by itself.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import shlex
import socket
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks import load_test  # noqa: E402
from lenet.inference.images import png_bytes  # noqa: E402

MEMORY_TARGET_MB = 1536
DISCONNECT_TARGET_S = 30
SLOW_REQUESTS = 6
SERVE_FLAGS: list[str] = []  # extra lenet-serve flags for every server started (--serve-flags)


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0]) / 1024
    return values


def digit_png(side: int, mode: str = "RGBA") -> bytes:
    """A side x side PNG of a drawn 1 (black on a transparent or white background): tiny on disk, big decoded."""
    background = (255, 255, 255, 0) if mode == "RGBA" else 255
    image = Image.new(mode, (side, side), background)
    ImageDraw.Draw(image).line([(side // 2, side // 6), (side // 2, 5 * side // 6)], fill="black",
                               width=max(4, side // 25))
    return png_bytes(image)


def post(url: str, body: bytes, timeout: float = 120) -> int:
    """POST `body` as image/png to /predict on a fresh connection; the status, or -1 on a connection error."""
    connection = http.client.HTTPConnection(*load_test.split_url(url), timeout=timeout)
    try:
        connection.request("POST", "/predict", body=body, headers={"Content-Type": "image/png"})
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return -1
    finally:
        connection.close()


def concurrent_posts(url: str, pid: int, body: bytes, count: int) -> dict:
    """`count` concurrent POSTs of `body` while /health is polled and the server's memory sampled."""
    statuses: collections.Counter = collections.Counter()
    health: list[tuple[int, float]] = []  # (status, seconds)
    done = threading.Event()

    def poll_health() -> None:
        while not done.is_set():
            start = time.perf_counter()
            try:
                connection = http.client.HTTPConnection(*load_test.split_url(url), timeout=10)
                connection.request("GET", "/health")
                status = connection.getresponse().status
                connection.close()
            except (OSError, http.client.HTTPException):
                status = -1
            health.append((status, time.perf_counter() - start))
            done.wait(0.1)

    before = memory_mb(pid)["VmRSS"]
    poller = threading.Thread(target=poll_health)
    poller.start()
    start = time.perf_counter()
    with ThreadPoolExecutor(count) as clients:
        for status in clients.map(lambda _: post(url, body), range(count)):
            statuses[status] += 1
    seconds = time.perf_counter() - start
    done.set()
    poller.join()
    time.sleep(0.5)
    after = memory_mb(pid)
    return {"statuses": dict(statuses), "seconds": seconds, "before_mb": before, "peak_mb": after["VmHWM"],
            "after_mb": after["VmRSS"], "health_ok": sum(status == 200 for status, _ in health),
            "health_total": len(health), "health_slowest_s": max((s for _, s in health), default=float("nan"))}


def check_memory(checkpoint: Path, log_dir: Path) -> bool:
    print("memory: 16 concurrent 6300x6300 RGBA PNGs, then 16 concurrent images just under the pixel cap")
    bomb = digit_png(6300)
    side = int(default_max_pixels() ** 0.5) - 1
    under_cap = digit_png(side)
    passed = True
    with load_test.server_process(checkpoint, log_dir / "memory.log", args=SERVE_FLAGS) as (url, server):
        for name, body in ((f"6300x6300 ({len(bomb) / 1e3:.0f} KB)", bomb),
                           (f"{side}x{side} ({len(under_cap) / 1e3:.0f} KB)", under_cap)):
            result = concurrent_posts(url, server.pid, body, 16)
            print(f"  {name}: statuses {result['statuses']} in {result['seconds']:.1f} s; server memory "
                  f"{result['before_mb']:.0f} MB before, peak {result['peak_mb']:.0f} MB, {result['after_mb']:.0f} MB "
                  f"after; /health answered {result['health_ok']}/{result['health_total']} polls, slowest "
                  f"{result['health_slowest_s'] * 1000:.0f} ms")
            passed &= result["peak_mb"] < MEMORY_TARGET_MB and result["health_ok"] == result["health_total"] > 0
    print(f"  target: peak under {MEMORY_TARGET_MB} MB with /health answering: {'met' if passed else 'MISSED'}")
    return passed


def default_max_pixels() -> int:
    from lenet.apps.serve import ServerSettings
    return ServerSettings().max_pixels


def time_connected(port: int, send: bytes, limit: float = 90) -> tuple[float, bytes]:
    """Connect, send `send`, then wait for the server to close: (seconds connected, all it sent).

    Still connected after `limit` seconds: (inf, what it sent so far).
    """
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as connection:
        start = time.monotonic()
        connection.sendall(send)
        reply = b""
        try:
            while data := connection.recv(65536):
                reply += data
        except socket.timeout:
            return float("inf"), reply
        except ConnectionResetError:
            pass
        return time.monotonic() - start, reply


def check_timeouts(checkpoint: Path, log_dir: Path) -> bool:
    print("timeouts: clients that stop sending")
    clients = {"headers of a POST, then nothing": b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                  b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n",
               "half a request line": b"POST /pred",
               "nothing at all": b""}
    passed = True
    with load_test.server_process(checkpoint, log_dir / "timeouts.log", args=SERVE_FLAGS) as (url, _):
        port = load_test.split_url(url)[1]
        with ThreadPoolExecutor(len(clients)) as pool:
            results = dict(zip(clients, pool.map(lambda send: time_connected(port, send), clients.values())))
    for name, (seconds, reply) in results.items():
        first_line = reply.split(b"\r\n", 1)[0].decode("latin-1") or "(nothing)"
        print(f"  {name}: disconnected after {seconds:.1f} s, told: {first_line}")
        passed &= seconds < DISCONNECT_TARGET_S
    print(f"  target: each disconnected within {DISCONNECT_TARGET_S} s: {'met' if passed else 'MISSED'}")
    return passed


def check_load(checkpoint: Path, log_dir: Path, requests: int, clients: int) -> bool:
    print(f"load: {requests} requests from {clients} concurrent keep-alive clients")
    labelled = load_test.test_images()
    images = [image for image, _ in labelled]
    expected = load_test.expected_predictions(checkpoint, images)
    with load_test.server_process(checkpoint, log_dir / "load.log", args=SERVE_FLAGS) as (url, _):
        load_test.warm_up(url, images)
        result = load_test.run_load(url, images, requests, clients, time_limit=300)
    wrong = load_test.wrong_answers(result, expected)
    statuses = dict(sorted(result.statuses.items()))
    print(f"  statuses {statuses}, {len(result.errors)} errors (connection failures or other statuses), "
          f"{len(wrong)} wrong answers, in {result.seconds:.1f} s")
    if result.latencies_ms:
        print(f"  {result.summary(clients)}")
    for line in (result.errors + wrong)[:5]:
        print(f"    {line}")
    passed = not result.errors and not wrong and set(statuses) <= {200, 503} \
        and sum(statuses.values()) == requests
    print(f"  target: only 200s and 503s, every 200 right: {'met' if passed else 'MISSED'}")
    return passed


def slow_post(url: str, body: bytes, seconds: float, results: list, index: int) -> None:
    """POST `body` in 10 pieces spread over `seconds`; results[index] = (status, seconds from start to answer)."""
    start = time.monotonic()
    connection = http.client.HTTPConnection(*load_test.split_url(url), timeout=120)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        pieces = 10
        for number in range(pieces):
            connection.send(body[number * len(body) // pieces:(number + 1) * len(body) // pieces])
            time.sleep(seconds / pieces)
        response = connection.getresponse()
        response.read()
        results[index] = (response.status, time.monotonic() - start)
    except (OSError, http.client.HTTPException) as error:
        results[index] = (f"{type(error).__name__}", time.monotonic() - start)
    finally:
        connection.close()


def check_shutdown(checkpoint: Path, log_dir: Path, upload_seconds: float = 8.0) -> bool:
    print(f"shutdown: SIGTERM while {SLOW_REQUESTS} requests upload their bodies over {upload_seconds:g} s")
    body = digit_png(280, "L")
    log = log_dir / "shutdown.log"
    results: list = [None] * SLOW_REQUESTS
    with load_test.server_process(checkpoint, log, args=SERVE_FLAGS) as (url, server):
        clients = [threading.Thread(target=slow_post, args=(url, body, upload_seconds, results, index))
                   for index in range(SLOW_REQUESTS)]
        for client in clients:
            client.start()
        time.sleep(1.5)
        signalled = time.monotonic()
        server.terminate()
        time.sleep(1.0)
        try:
            socket.create_connection(("127.0.0.1", load_test.split_url(url)[1]), timeout=5).close()
            refused = "no: a new connection was accepted"
        except OSError:
            refused = "yes"
        for client in clients:
            client.join(timeout=120)
        try:
            server.wait(timeout=60)
            exited = f"{time.monotonic() - signalled:.1f} s after SIGTERM (return code {server.returncode})"
        except Exception:
            exited = "not within 60 s"
    text = log.read_text(errors="replace")
    print(f"  answers (status, seconds): {results}")
    print(f"  new connections refused after SIGTERM: {refused}; server exited {exited}; "
          f"traceback in its log: {'yes' if 'Traceback' in text else 'no'}")
    passed = all(result is not None and result[0] == 200 for result in results) and "Traceback" not in text
    print(f"  target: all {SLOW_REQUESTS} answered 200, no traceback: {'met' if passed else 'MISSED'}")
    return passed


CHECKS: dict[str, Callable[..., bool]] = {"memory": check_memory, "timeouts": check_timeouts, "load": check_load,
                                          "shutdown": check_shutdown}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="the checkpoint to serve (default: best.pt of the newest completed run in runs/)")
    parser.add_argument("--only", metavar="CHECKS", default=",".join(CHECKS),
                        help=f"comma-separated checks to run (default: {','.join(CHECKS)})")
    parser.add_argument("--requests", metavar="N", type=int, default=2000,
                        help="requests in the load check (default: 2000)")
    parser.add_argument("--clients", metavar="N", type=int, default=100,
                        help="concurrent clients in the load check (default: 100)")
    parser.add_argument("--serve-flags", default="", metavar="FLAGS",
                        help="extra lenet-serve flags for every server, e.g. '--max-predictions 4' "
                             "(default: none, the server's defaults)")
    parser.add_argument("--keep-logs", metavar="DIR", default=None,
                        help="write the servers' logs here (default: a temporary folder, removed at the end)")
    args = parser.parse_args(argv)
    chosen = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in CHECKS]
    if unknown:
        parser.error(f"--only {','.join(unknown)}: unknown check; choose from {', '.join(CHECKS)}")

    SERVE_FLAGS[:] = shlex.split(args.serve_flags)
    from lenet.runs import default_checkpoint
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_checkpoint("runs")
    print(f"checkpoint {checkpoint}, lenet-serve flags: {' '.join(SERVE_FLAGS) or '(defaults)'}")
    with tempfile.TemporaryDirectory() as temporary:
        log_dir = Path(args.keep_logs or temporary)
        log_dir.mkdir(parents=True, exist_ok=True)
        passed = {}
        for name in chosen:
            extra = (args.requests, args.clients) if name == "load" else ()
            passed[name] = CHECKS[name](checkpoint, log_dir, *extra)
    print("summary: " + ", ".join(f"{name} {'met' if ok else 'MISSED'}" for name, ok in passed.items()))
    return 0 if all(passed.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
