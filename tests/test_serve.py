"""lenet-serve: /predict answers like lenet-predict, refuses bad requests with one sentence and keeps serving,
serves the page and its files, bounds what it takes on (pixels, predictions, time, connections), shuts down
gracefully, and a real server on loopback answers concurrent clients correctly (benchmarks/load_test.py,
kept small here)."""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from benchmarks import load_test
from benchmarks.serve_limits import time_connected
from conftest import real_mnist_dir, synthetic_digits
from helpers import huge_png, png_bytes

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev]'")
from fastapi.testclient import TestClient  # noqa: E402

from lenet.apps import serve  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.inference.predict import as_json, load_model, predict  # noqa: E402
from lenet.apps.serve import MAX_BODY_BYTES, STATIC, ServerSettings, create_app, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSON_KEYS = {"file", "prediction", "probability", "probabilities", "error", "image"}
PNG = {"Content-Type": "image/png"}
N_DIGITS = 20
# Short limits for the server that checks them, generous enough for a loaded 2-core machine.
SHORT_TIMEOUTS = ["--header-timeout", "3", "--body-timeout", "3", "--keep-alive-timeout", "1",
                  "--max-connections", "4"]
DISCONNECTED_WITHIN = 25  # seconds: far above the 3 s limits, far below "never"


def drawn_one(side: int) -> bytes:
    """A PNG of a thick black 1 on white, side x side pixels."""
    image = Image.new("L", (side, side), 255)
    ImageDraw.Draw(image).line([(side // 2, side // 6), (side // 2, 5 * side // 6)], fill=0, width=side // 12)
    return png_bytes(image)


@pytest.fixture(scope="module")
def checkpoint(request) -> Path:
    """A model trained on real MNIST when the data is here (so digits are read right), else the tiny one."""
    return request.getfixturevalue("mnist_checkpoint" if real_mnist_dir() else "tiny_checkpoint")


@pytest.fixture(scope="module")
def digits() -> list[tuple[bytes, int]]:
    """(PNG, label): MNIST test digits scaled up to 112 px, black ink on white (synthetic ones without the data)."""
    if real_mnist_dir():
        return load_test.mnist_digit_pngs(N_DIGITS, real_mnist_dir())
    images, labels = synthetic_digits(N_DIGITS, seed=5)
    return [(png_bytes(ImageOps.invert(Image.fromarray(image.numpy())).resize((112, 112))), int(label))
            for image, label in zip(images, labels)]


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_model(checkpoint)


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model)) as client:
        yield client


def still_serving(client: TestClient, digit: bytes) -> None:
    """The server answers health checks and predictions after whatever came before."""
    assert client.get("/health").status_code == 200
    assert client.post("/predict", content=digit, headers=PNG).status_code == 200


def is_one_sentence(answer: dict) -> bool:
    return set(answer) == {"error"} and answer["error"].endswith(".") and "\n" not in answer["error"]


def test_predict_answers_each_digit_as_lenet_predict_does(client, model, digits):
    for image, _ in digits:
        response = client.post("/predict", content=image, headers=PNG)
        assert response.status_code == 200
        answer = response.json()
        assert set(answer) == JSON_KEYS
        expected = as_json(None, predict(model, image)[0])
        assert answer["prediction"] == expected["prediction"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert answer["error"] is None and answer["file"] is None


@pytest.mark.skipif(real_mnist_dir() is None, reason="needs the real MNIST files for a model that reads digits")
def test_predict_reads_real_digits_right(client, digits):
    correct = sum(client.post("/predict", content=image, headers=PNG).json()["prediction"] == label
                  for image, label in digits)
    assert correct >= 0.9 * len(digits)


def test_answer_carries_the_28x28_input_the_model_saw(client, model, digits):
    image = digits[0][0]
    data_url = client.post("/predict", content=image, headers=PNG).json()["image"]
    assert data_url.startswith("data:image/png;base64,")
    shown = np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))
    assert shown.shape == (28, 28)
    np.testing.assert_allclose(shown / 255, predict(model, image)[0].image, atol=1 / 255)


def test_multipart_upload_gives_the_same_answer_and_names_the_file(client, digits):
    image = digits[0][0]
    raw = client.post("/predict", content=image, headers=PNG).json()
    upload = client.post("/predict", files={"file": ("digit.png", image, "image/png")}).json()
    assert upload["file"] == "digit.png"
    assert {**upload, "file": None} == raw


@pytest.mark.parametrize("headers", [{"Content-Type": "application/octet-stream"}, {"Content-Type": "image/jpeg"}, {}],
                         ids=["octet-stream", "another image type", "no content type"])
def test_raw_bytes_are_accepted_with_any_image_type_or_none(client, digits, headers):
    response = client.post("/predict", content=digits[0][0], headers=headers)
    assert response.status_code == 200, response.text


def test_health_reports_the_loaded_model_even_after_its_file_is_deleted(checkpoint, tmp_path):
    copy = tmp_path / "mine" / "checkpoints" / "best.pt"
    copy.parent.mkdir(parents=True)
    copy.write_bytes(checkpoint.read_bytes())
    with TestClient(create_app(load_model(copy))) as client:
        copy.unlink()  # the model stays in memory: /health says what is loaded, not whether the file is there
        response = client.get("/health")
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert "mine/checkpoints/best.pt" in health["model"]
    assert datetime.fromisoformat(health["loaded_at"])
    assert str(tmp_path) not in response.text and "/tmp" not in response.text  # no absolute path to a remote client


def test_page_is_index_html_as_it_is(client):
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.content == (STATIC / "index.html").read_bytes()


def test_every_static_file_is_served_with_its_content_type(client):
    served = [path for path in STATIC.iterdir() if path.suffix in serve.CONTENT_TYPES]
    assert {".js", ".css"} <= {path.suffix for path in served}
    for path in served:
        response = client.get(f"/static/{path.name}")
        assert response.status_code == 200
        assert response.content == path.read_bytes()
        assert response.headers["content-type"].split(";")[0] == serve.CONTENT_TYPES[path.suffix]
    assert serve.CONTENT_TYPES[".js"] == "text/javascript" and serve.CONTENT_TYPES[".css"] == "text/css"


@pytest.mark.parametrize("path", ["/static/", "/static", "/static/..%2Fserve.py", "/static/%2e%2e/serve.py",
                                  "/static/.hidden.js", "/static/nothing.js", "/static/__init__.py"])
def test_static_lists_nothing_and_serves_nothing_outside_its_folder(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert is_one_sentence(response.json())


def chunks(data: bytes, size: int = 64 * 1024):
    """`data` as a generator, so the client sends it chunked, without a Content-Length."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


BAD_REQUESTS = {  # name: (method, request arguments, status, part of the error sentence)
    "not an image": ("POST", {"content": b"this is not an image\n", "headers": PNG}, 400,
                     "not an image Pillow can read"),
    "truncated image": ("POST", {"content": png_bytes(Image.effect_noise((200, 200), 60))[:3000], "headers": PNG},
                        400, "truncated or corrupt"),
    "blank image": ("POST", {"content": png_bytes(Image.new("L", (280, 280), 255)), "headers": PNG}, 400,
                    "blank, no ink found"),
    "empty body": ("POST", {"content": b"", "headers": PNG}, 400, "the request body is empty"),
    "body over the limit": ("POST", {"content": b"\0" * (MAX_BODY_BYTES + 1), "headers": PNG}, 413,
                            "over the 5 MB limit"),
    "chunked body over the limit": ("POST", {"content": lambda: chunks(b"\0" * (MAX_BODY_BYTES + 1)),
                                             "headers": PNG}, 413, "over the 5 MB limit"),
    # Issue 12, item 3: a 182 KB PNG of 6300x6300 RGBA decodes to 400 MB; its header alone refuses it.
    "6300x6300 image": ("POST", {"content": huge_png(6300), "headers": PNG}, 413,
                        "6300x6300 pixels (40 megapixels), over this server's limit of 16 megapixels"),
    "enormous image": ("POST", {"content": huge_png(), "headers": PNG}, 413, "9000x9000 pixels"),
    "decompression bomb": ("POST", {"content": huge_png(20_000), "headers": PNG}, 413,
                           "header claims over this server's limit"),
    "enormous upload": ("POST", {"files": {"file": ("big.png", huge_png(6300), "image/png")}}, 413, "6300x6300"),
    "json": ("POST", {"content": json.dumps({"image": "7"}), "headers": {"Content-Type": "application/json"}}, 415,
             "content type application/json is not accepted"),
    "text": ("POST", {"content": b"7", "headers": {"Content-Type": "text/plain"}}, 415,
             "content type text/plain is not accepted"),
    "form without the file field": ("POST", {"files": {"image": ("digit.png", b"\x89PNG", "image/png")}}, 400,
                                    "no file in the field 'file'"),
    "empty uploaded file": ("POST", {"files": {"file": ("digit.png", b"", "image/png")}}, 400,
                            "the uploaded file is empty"),
    "malformed multipart": ("POST", {"content": b"--x\r\n", "headers": {"Content-Type": "multipart/form-data"}},
                            400, "the multipart upload is malformed"),
    "wrong method": ("GET", {}, 405, "GET is not allowed on /predict: use POST."),
    "another wrong method": ("PUT", {"content": b"x"}, 405, "PUT is not allowed on /predict: use POST."),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_request_gets_one_sentence_and_the_server_keeps_serving(client, digits, name):
    method, arguments, status, message = BAD_REQUESTS[name]
    if callable(arguments.get("content")):
        arguments = {**arguments, "content": arguments["content"]()}
    response = client.request(method, "/predict", **arguments)
    assert response.status_code == status
    answer = response.json()
    assert is_one_sentence(answer)
    assert message in answer["error"]
    still_serving(client, digits[0][0])


@pytest.mark.parametrize("mode, colour", [("LAB", (40, 10, 200)), ("LAB", (90, 0, 0)), ("CMYK", (0, 0, 0, 255)),
                                          ("I;16", 40000)])
def test_an_image_pillow_opens_in_any_colour_mode_is_never_a_server_error(client, digits, mode, colour):
    image = Image.new(mode, (64, 64), colour)
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF")  # a LAB TIFF: Pillow opens it but once could not convert it (issue 12, 7)
    response = client.post("/predict", content=buffer.getvalue(), headers={"Content-Type": "image/tiff"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert is_one_sentence(response.json())
    still_serving(client, digits[0][0])


def test_unconvertible_colour_mode_is_refused_from_the_header(client, monkeypatch):
    monkeypatch.setattr(serve, "convertible", lambda mode: mode != "LAB")  # as before preprocess read LAB
    buffer = io.BytesIO()
    Image.new("LAB", (64, 64), (40, 10, 200)).save(buffer, format="TIFF")
    response = client.post("/predict", content=buffer.getvalue(), headers=PNG)
    assert response.status_code == 400
    assert "colour mode LAB cannot be read as a digit" in response.json()["error"]


def test_pixel_cap_is_a_setting(model, digits):
    with TestClient(create_app(model, ServerSettings(max_pixels=100 * 100))) as small:
        response = small.post("/predict", content=digits[0][0], headers=PNG)  # 112x112
    assert response.status_code == 413
    assert "112x112 pixels" in response.json()["error"] and "limit of 0.01 megapixels" in response.json()["error"]


def test_excess_predictions_wait_briefly_then_get_503_with_retry_after(model, digits, monkeypatch):
    running, finish = threading.Event(), threading.Event()
    original = serve.answer

    def slow_answer(*args):
        running.set()
        finish.wait(timeout=60)
        return original(*args)

    monkeypatch.setattr(serve, "answer", slow_answer)
    with TestClient(create_app(model, ServerSettings(max_predictions=1, queue_timeout=0.5))) as one_at_a_time:
        first: dict = {}
        holder = threading.Thread(target=lambda: first.update(
            response=one_at_a_time.post("/predict", content=digits[0][0], headers=PNG)))
        holder.start()
        assert running.wait(timeout=60)
        start = time.monotonic()
        refused = one_at_a_time.post("/predict", content=digits[1][0], headers=PNG)
        waited = time.monotonic() - start
        assert one_at_a_time.get("/health").status_code == 200  # health never waits for a prediction
        finish.set()
        holder.join(timeout=60)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "the server is busy" in refused.json()["error"] and is_one_sentence(refused.json())
    assert 0.4 < waited < 30
    assert first["response"].status_code == 200


def test_memory_is_handed_back_after_a_large_image_only(client, monkeypatch):
    released = []
    monkeypatch.setattr(serve, "release_memory", lambda: released.append(threading.current_thread().name))
    assert client.post("/predict", content=drawn_one(280), headers=PNG).status_code == 200
    assert released == []
    assert client.post("/predict", content=drawn_one(1200), headers=PNG).status_code == 200  # 1.44 MP
    assert len(released) == 1 and released[0].startswith("predict")  # on the thread that held the memory


def test_no_cors_header_unless_configured(client, model):
    origin = {"Origin": "https://elsewhere.example"}
    assert "access-control-allow-origin" not in client.get("/health", headers=origin).headers
    preflight = client.options("/predict", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    with TestClient(create_app(model, ServerSettings(allow_origins=("https://mine.example",)))) as shared:
        allowed = shared.get("/health", headers={"Origin": "https://mine.example"})
        other = shared.get("/health", headers=origin)
    assert allowed.headers["access-control-allow-origin"] == "https://mine.example"
    assert "access-control-allow-origin" not in other.headers


def test_unknown_path_gets_a_json_sentence(client):
    response = client.get("/predictions")
    assert response.status_code == 404
    assert response.json() == {"error": "nothing at /predictions: use POST /predict, GET /health or GET /."}


def test_missing_model_stops_with_the_lenet_predict_sentence(tmp_path, capsys):
    with pytest.raises(LenetError) as expected:
        load_model(None, runs_dir=tmp_path)
    assert main(["--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == f"error: {expected.value}\n"


def test_port_in_use_stops_with_a_sentence(tiny_checkpoint, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["--checkpoint", str(tiny_checkpoint), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot listen on 127.0.0.1:{port}") and error.count("\n") == 1


@pytest.mark.parametrize("flags, message", [(["--max-pixels", "0"], "--max-pixels must be above 0, got 0."),
                                            (["--queue-timeout", "-1"], "--queue-timeout must be above 0"),
                                            (["--allow-origin", "mine.example"], "--allow-origin mine.example is "
                                                                                 "not a web origin")])
def test_invalid_limit_stops_with_a_sentence_naming_the_flag(tmp_path, capsys, flags, message):
    assert main(["--runs-dir", str(tmp_path), *flags]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1


@pytest.fixture(scope="module")
def live_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="module")
def live_server(checkpoint, live_log):
    """`lenet-serve` in a subprocess on a free loopback port, default settings; yields its base URL."""
    with load_test.serving(checkpoint, log=live_log) as url:
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_concurrent_clients_get_correct_answers_without_errors(live_server, checkpoint, digits):
    script = load_test
    images = [image for image, _ in digits]
    result = script.run_load(live_server, images, requests=300, clients=8, time_limit=120)
    assert result.errors == []
    assert result.requests == 300
    assert script.wrong_answers(result, script.expected_predictions(checkpoint, images)) == []


def test_a_hundred_clients_get_only_200s_or_503s(live_server, checkpoint, digits):
    script = load_test
    images = [image for image, _ in digits]
    result = script.run_load(live_server, images, requests=400, clients=100, time_limit=240)
    assert result.errors == []  # no connection errors, no status but 200 and 503
    assert set(result.statuses) <= {200, 503} and sum(result.statuses.values()) == 400
    assert script.wrong_answers(result, script.expected_predictions(checkpoint, images)) == []


def test_declared_oversize_body_is_refused_before_it_is_sent(live_server):
    with socket.create_connection(("127.0.0.1", port_of(live_server)), timeout=10) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 1000000000\r\n\r\n")  # the gigabyte never follows
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            data = connection.recv(65536)
            if not data:
                break
            reply += data
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 413")
    assert "over the 5 MB limit" in json.loads(body)["error"]


def wait_for_line(log: Path, part: str, timeout: float = 30) -> list[str]:
    """The log's lines once one holds `part` (or after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = log.read_text(errors="replace").splitlines()
        if any(part in line for line in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.2)


def test_client_that_leaves_mid_upload_is_one_info_line_not_a_traceback(live_server, live_log):
    with socket.create_connection(("127.0.0.1", port_of(live_server)), timeout=10) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 10000\r\n\r\n" + b"\x89PNG" * 25)
        time.sleep(0.5)  # the server is reading the body now
    lines = wait_for_line(live_log, "disconnected before sending the whole request")
    left = [line for line in lines if "disconnected before sending the whole request" in line]
    assert len(left) == 1 and left[0].startswith("INFO:")
    text = "\n".join(lines)
    assert "Traceback" not in text and "ERROR" not in text


@pytest.fixture(scope="module")
def short_timeouts_server(checkpoint, tmp_path_factory):
    """`lenet-serve` with 3 s header and body deadlines, a 1 s keep-alive and at most 4 connections."""
    with load_test.serving(checkpoint, log=tmp_path_factory.mktemp("serve") / "short.log",
                                    args=SHORT_TIMEOUTS) as url:
        yield port_of(url)


def test_client_that_sends_headers_then_nothing_is_answered_408_and_disconnected(short_timeouts_server):
    seconds, reply = time_connected(short_timeouts_server, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                          b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n")
    assert 2 < seconds < DISCONNECTED_WITHIN
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408")
    assert "the request body did not arrive within 3 s" in json.loads(body)["error"]


@pytest.mark.parametrize("send", [b"POST /pred", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""],
                         ids=["half a request line", "headers without their end", "nothing"])
def test_client_that_never_finishes_its_headers_is_disconnected(short_timeouts_server, send):
    seconds, reply = time_connected(short_timeouts_server, send)
    assert 2 < seconds < DISCONNECTED_WITHIN and reply == b""


def test_idle_keep_alive_connection_is_closed(short_timeouts_server):
    connection = http.client.HTTPConnection("127.0.0.1", short_timeouts_server, timeout=90)
    connection.request("GET", "/health")
    assert connection.getresponse().read()
    start = time.monotonic()
    assert connection.sock.recv(1) == b""  # the server closed it
    assert time.monotonic() - start < DISCONNECTED_WITHIN
    connection.close()


def test_connections_past_the_cap_get_503(short_timeouts_server):
    others = [socket.create_connection(("127.0.0.1", short_timeouts_server), timeout=10) for _ in range(3)]
    try:
        time.sleep(0.3)  # the server has accepted them
        connection = http.client.HTTPConnection("127.0.0.1", short_timeouts_server, timeout=30)
        connection.request("GET", "/health")
        assert connection.getresponse().status == 503
        connection.close()
    finally:
        for other in others:
            other.close()


def slow_post(url: str, body: bytes, seconds: float, pieces: int = 10) -> tuple[int, dict]:
    """POST `body` in `pieces` spread over `seconds`; (status, JSON answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port_of(url), timeout=120)
    try:
        connection.putrequest("POST", "/predict")
        connection.putheader("Content-Type", "image/png")
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders()
        for number in range(pieces):
            connection.send(body[number * len(body) // pieces:(number + 1) * len(body) // pieces])
            time.sleep(seconds / pieces)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def stalled_post(url: str, body: bytes) -> tuple[int, dict]:
    """POST half of `body` and wait for the answer; the rest never comes."""
    with socket.create_connection(("127.0.0.1", port_of(url)), timeout=120) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                           + f"Content-Length: {len(body)}\r\n\r\n".encode() + body[:len(body) // 2])
        reply = b""
        while data := connection.recv(65536):
            reply += data
    head, answer = reply.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(answer)


def test_sigterm_lets_requests_in_flight_finish(checkpoint, digits, tmp_path):
    """Issue 12, item 5: six slow requests under way at SIGTERM are answered 200 (uvicorn cancelled them
    after 5 s before); one that is still not sent when the bound passes gets a 503 sentence, not a traceback."""
    log = tmp_path / "serve.log"
    image = digits[0][0]
    expected = as_json(None, predict(load_model(checkpoint), image)[0])["prediction"]
    answers: dict[int, tuple[int, dict]] = {}
    with load_test.server_process(checkpoint, log=log, args=["--shutdown-timeout", "10",
                                                                      "--body-timeout", "60"]) as (url, server):
        clients = [threading.Thread(target=lambda index=index: answers.update({index: slow_post(url, image, 7)}))
                   for index in range(6)]
        clients.append(threading.Thread(target=lambda: answers.update({6: stalled_post(url, image)})))
        for client in clients:
            client.start()
        time.sleep(1)
        server.terminate()
        time.sleep(1)
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", port_of(url)), timeout=5).close()
        for client in clients:
            client.join(timeout=120)
        server.wait(timeout=60)
    for index in range(6):
        status, answer = answers[index]
        assert status == 200 and answer["prediction"] == expected
    status, answer = answers[6]
    assert status == 503 and is_one_sentence(answer) and "the server stopped" in answer["error"]
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "CancelledError" not in text
    assert sum("still running when the server stopped" in line for line in text.splitlines()) == 1
