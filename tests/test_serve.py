"""lenet-serve: /predict answers like lenet-predict, refuses bad requests with one sentence and keeps serving,
serves the page and its files, bounds what it takes on (pixels, predictions, time, connections), shuts down
gracefully, and a real server on loopback answers concurrent clients correctly (a small load test: every request
is answered, with lenet.inference.predict's digit; benchmarks/load_test.py measures the speed). Tests that start a
real server are marked `server`; the others run the app in-process.

Nothing here passes or fails by a clock: each test waits for what it expects (an answer, a closed
connection, a log line) with a generous deadline, and asserts what happened."""

from __future__ import annotations

import asyncio
import base64
import http.client
import inspect
import io
import json
import socket
import threading
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from helpers import (huge_png, lenet_serve, png_bytes, post_concurrently, predicted_digits, real_mnist_dir, seven,
                     synthetic_digits, wait_until)

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev]'")
import uvicorn  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from lenet.apps import serve  # noqa: E402
from lenet.apps.serve import MAX_BODY_BYTES, STATIC, ServerSettings, create_app  # noqa: E402
from lenet.cli.serve import main  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.inference.predict import as_json, load_model, predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSON_KEYS = {"file", "outcome", "familiarity", "evidence", "prediction", "probability", "probabilities", "error", "image"}
PNG = {"Content-Type": "image/png"}
N_DIGITS = 20
# Short limits for the server that checks them, generous enough for a loaded 2-core machine.
SHORT_TIMEOUTS = ["--header-timeout", "3", "--body-timeout", "3", "--keep-alive-timeout", "1",
                  "--max-connections", "4"]
DISCONNECTED_WITHIN = 25  # seconds a test waits for the server to close a connection: far above the 3 s limits


@pytest.fixture(scope="module")
def checkpoint(tiny_checkpoint) -> Path:
    """The tiny model: the server must answer as `lenet-predict` does with any model; reading real digits right
    is `test_predict_reads_real_digits_right`'s, with the real-MNIST model (the slow tier)."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def digits() -> list[tuple[bytes, int]]:
    """(PNG, label): MNIST test digits scaled up to 112 px, black ink on white (synthetic ones without the data)."""
    if real_mnist_dir():
        from lenet.data import load_torchvision_dataset
        test_set = load_torchvision_dataset("mnist", real_mnist_dir(), train=False, download=False)
        images, labels = test_set.data[:N_DIGITS], test_set.targets[:N_DIGITS]
    else:
        images, labels = synthetic_digits(N_DIGITS, seed=5)
    return [(png_bytes(ImageOps.invert(Image.fromarray(image.numpy())).resize((112, 112), Image.Resampling.LANCZOS)),
             int(label)) for image, label in zip(images, labels)]


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
        assert answer["prediction"] == expected["prediction"] and answer["outcome"] == expected["outcome"]
        assert answer["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-5)
        assert answer["error"] is None and answer["file"] is None


def test_predict_reads_real_digits_right(mnist_checkpoint, digits):
    with TestClient(create_app(load_model(mnist_checkpoint))) as client:
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


def odd_images() -> dict[str, bytes]:
    """Images of shapes and kinds a digit photo never has, each with some ink; name: file bytes."""
    line = Image.new("L", (30000, 3), 255)
    ImageDraw.Draw(line).line([(0, 1), (29999, 1)], fill=0)
    tall, wide = Image.new("L", (1, 5000), 255), Image.new("L", (5000, 1), 255)
    ImageDraw.Draw(tall).line([(0, 1000), (0, 4000)], fill=0)
    ImageDraw.Draw(wide).line([(1000, 0), (4000, 0)], fill=0)
    sixteen_bit = np.full((64, 64), 65535, np.uint16)
    sixteen_bit[8:56, 28:36] = 0  # a 1
    cmyk = Image.new("CMYK", (64, 64), (0, 0, 0, 0))
    ImageDraw.Draw(cmyk).line([(32, 8), (32, 56)], fill=(0, 0, 0, 255), width=6)
    jpeg = io.BytesIO()
    cmyk.save(jpeg, format="JPEG")
    return {"30000x3 line": png_bytes(line), "1x1": png_bytes(Image.new("L", (1, 1), 0)), "1x5000": png_bytes(tall),
            "5000x1": png_bytes(wide), "16-bit PNG": png_bytes(Image.fromarray(sixteen_bit)),
            "CMYK JPEG": jpeg.getvalue()}


@pytest.mark.parametrize("name", odd_images())
def test_an_odd_image_is_answered_or_refused_never_a_server_error(client, digits, name):
    response = client.post("/predict", content=odd_images()[name], headers={"Content-Type": "image/*"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert is_one_sentence(response.json()), response.text
    else:
        assert set(response.json()) == JSON_KEYS
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
    original = serve.prediction_answer

    def held_answer(*args):
        running.set()
        finish.wait(timeout=60)
        return original(*args)

    monkeypatch.setattr(serve, "prediction_answer", held_answer)
    with TestClient(create_app(model, ServerSettings(max_predictions=1, queue_timeout=0.5))) as one_at_a_time:
        first: dict = {}
        holder = threading.Thread(target=lambda: first.update(
            response=one_at_a_time.post("/predict", content=digits[0][0], headers=PNG)))
        holder.start()
        assert running.wait(timeout=60), "the first prediction never started"
        refused = one_at_a_time.post("/predict", content=digits[1][0], headers=PNG)
        assert one_at_a_time.get("/health").status_code == 200  # health never waits for a prediction
        finish.set()
        holder.join(timeout=60)
    assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
    assert "the server is busy" in refused.json()["error"] and is_one_sentence(refused.json())
    assert "this request waited 0.5 s for a turn" in refused.json()["error"]
    assert first["response"].status_code == 200


def test_memory_is_handed_back_after_a_large_image_only(client, monkeypatch):
    released = []
    monkeypatch.setattr(serve, "release_memory", lambda: released.append(threading.current_thread().name))
    assert client.post("/predict", content=png_bytes(seven(280)), headers=PNG).status_code == 200
    assert released == []
    assert client.post("/predict", content=png_bytes(seven(1200)), headers=PNG).status_code == 200  # 1.44 MP
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


# What lenet.apps.serve's HeaderDeadlineProtocol takes from uvicorn's private H11Protocol: the methods it
# overrides (name: parameters after self); it also reads self.loop, self.cycle (.response_complete),
# self.transport, self.client and self.conn.trailing_data, which driving it below exercises.
H11_OVERRIDDEN = {"connection_made": ["transport"], "data_received": ["data"], "on_response_complete": [],
                  "connection_lost": ["exc"]}


class RecordingTransport(asyncio.Transport):
    """A transport that keeps what the protocol writes, to drive a protocol without a socket."""

    def __init__(self) -> None:
        super().__init__()
        self.written, self.closed = bytearray(), False

    def get_extra_info(self, name: str, default=None):
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def drive_header_deadline_protocol() -> list[str]:
    """Half a request line, then a whole request, through HeaderDeadlineProtocol on this uvicorn; what went wrong."""
    from uvicorn.server import ServerState

    async def ok(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    protocol_class = serve.http_protocol(header_timeout=60)
    config = uvicorn.Config(ok, http=protocol_class, lifespan="off", log_config=None)
    problems = []
    half = protocol_class(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    half.connection_made(RecordingTransport())
    if half.header_clock is None:
        problems.append("no header clock runs after connection_made() (it uses self.loop and self.cycle)")
    half.data_received(b"POST /pred")
    if half.conn.trailing_data != (b"POST /pred", False):
        problems.append(f"self.conn.trailing_data is {half.conn.trailing_data!r} after half a request line, not "
                        "(b'POST /pred', False)")
    half.headers_too_slow()
    if not half.transport.closed:
        problems.append("headers_too_slow() did not close self.transport")
    half.connection_lost(None)

    whole = protocol_class(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    whole.connection_made(RecordingTransport())
    whole.data_received(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    if whole.header_clock is not None:
        problems.append("the header clock still runs once a request's headers are in (a new self.cycle stops it)")
    async with asyncio.timeout(30):
        while not (whole.cycle is not None and whole.cycle.response_complete):
            await asyncio.sleep(0.01)
    if not whole.transport.written.startswith(b"HTTP/1.1 200"):
        problems.append(f"the answer written to self.transport is {bytes(whole.transport.written[:40])!r}")
    if whole.header_clock is None:
        problems.append("the header clock did not start again after an answer (on_response_complete() with "
                        "self.cycle.response_complete)")
    whole.connection_lost(None)
    return problems


def test_uvicorn_still_has_what_the_header_deadline_protocol_relies_on():
    problems = []
    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as error:
        problems.append(f"uvicorn.protocols.http.h11_impl.H11Protocol cannot be imported ({error})")
    else:
        for name, parameters in H11_OVERRIDDEN.items():
            method = getattr(H11Protocol, name, None)
            found = list(inspect.signature(method).parameters)[1:] if callable(method) else None
            if found is None:
                problems.append(f"H11Protocol.{name}() is gone")
            elif found != parameters:
                problems.append(f"H11Protocol.{name}() takes ({', '.join(found)}), not ({', '.join(parameters)})")
        if not problems:
            try:
                problems = asyncio.run(drive_header_deadline_protocol())
            except Exception as error:  # an attribute gone, a method that now fails
                problems.append(f"driving it failed with {type(error).__name__}: {error}")
    assert not problems, (
        f"uvicorn {uvicorn.__version__} changed what lenet.apps.serve's HeaderDeadlineProtocol (http_protocol) relies "
        f"on in uvicorn.protocols.http.h11_impl.H11Protocol: {'; '.join(problems)}. Check lenet.apps.serve against "
        "this uvicorn before raising the uvicorn cap in pyproject.toml.")


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
    with lenet_serve(checkpoint, log=live_log) as (url, _):
        yield url


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def log_lines_once(log: Path, part: str) -> list[str]:
    """The server log's lines, once one of them holds `part` (AssertionError if none does within 30 s)."""

    def lines_if_there() -> list[str] | None:
        lines = log.read_text(errors="replace").splitlines()
        return lines if any(part in line for line in lines) else None

    return wait_until(lines_if_there, 30, f"a log line with {part!r}")


def wrong_answers(answers: list[tuple[int, int, dict]], expected: list[int | None]) -> list[str]:
    """One line per 200 answer whose digit is not lenet.inference.predict's for the same image."""
    return [f"image {image}: the server said {answer['prediction']}, lenet.inference.predict says {expected[image]}"
            for image, status, answer in answers if status == 200 and answer["prediction"] != expected[image]]


@pytest.mark.server
def test_concurrent_clients_get_correct_answers_without_errors(live_server, model, digits):
    images = [image for image, _ in digits]
    answers = post_concurrently(live_server, images, requests=300, clients=8)
    assert len(answers) == 300
    assert [answer for _, status, answer in answers if status != 200] == []
    assert wrong_answers(answers, predicted_digits(model, images)) == []


@pytest.mark.server
def test_a_hundred_clients_get_only_200s_or_503s(live_server, model, digits):
    images = [image for image, _ in digits]
    answers = post_concurrently(live_server, images, requests=400, clients=100)
    assert len(answers) == 400
    assert [(status, answer) for _, status, answer in answers if status not in (200, 503)] == []  # 0: no answer
    assert any(status == 200 for _, status, _ in answers)
    assert wrong_answers(answers, predicted_digits(model, images)) == []


@pytest.mark.server
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


@pytest.mark.server
def test_client_that_leaves_mid_upload_is_one_info_line_not_a_traceback(live_server, live_log):
    with socket.create_connection(("127.0.0.1", port_of(live_server)), timeout=10) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                           b"Content-Length: 10000\r\n\r\n" + b"\x89PNG" * 25)  # 100 of the 10,000 bytes
    lines = log_lines_once(live_log, "disconnected before sending the whole request")
    left = [line for line in lines if "disconnected before sending the whole request" in line]
    assert len(left) == 1 and left[0].startswith("INFO:")
    text = "\n".join(lines)
    assert "Traceback" not in text and "ERROR" not in text


@pytest.fixture(scope="module")
def short_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve") / "short.log"


@pytest.fixture(scope="module")
def short_timeouts_server(checkpoint, short_log):
    """`lenet-serve` with 3 s header and body deadlines, a 1 s keep-alive and at most 4 connections; its port."""
    with lenet_serve(checkpoint, log=short_log, args=SHORT_TIMEOUTS) as (url, _):
        yield port_of(url)


def reply_until_closed(port: int, send: bytes) -> tuple[bytes, int]:
    """Connect, send `send`, read until the server closes the connection: (all it sent, this client's port).

    Fails if the server keeps the connection open for DISCONNECTED_WITHIN s.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=DISCONNECTED_WITHIN) as connection:
        connection.sendall(send)
        reply = b""
        try:
            while data := connection.recv(65536):
                reply += data
        except TimeoutError:
            pytest.fail(f"the server kept the connection open {DISCONNECTED_WITHIN} s after {send!r} "
                        f"(it answered {reply[:60]!r})")
        except ConnectionResetError:
            pass
        return reply, connection.getsockname()[1]


@pytest.mark.server
def test_client_that_sends_headers_then_nothing_is_answered_408_and_disconnected(short_timeouts_server, short_log):
    reply, client_port = reply_until_closed(short_timeouts_server,
                                            b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            b"Content-Type: image/png\r\nContent-Length: 1000\r\n\r\n")
    head, body = reply.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 408")
    assert "the request body did not arrive within 3 s" in json.loads(body)["error"]
    log_lines_once(short_log, f"127.0.0.1:{client_port} sent 0 bytes of its body in 3 s; answered 408")


@pytest.mark.server
@pytest.mark.parametrize("send", [b"POST /pred", b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", b""],
                         ids=["half a request line", "headers without their end", "nothing"])
def test_client_that_never_finishes_its_headers_is_disconnected(short_timeouts_server, short_log, send):
    reply, client_port = reply_until_closed(short_timeouts_server, send)
    assert reply == b""
    said = f"127.0.0.1:{client_port} sent no complete request headers within 3 s; closed the connection"
    if send:
        log_lines_once(short_log, said)
    else:  # an idle connection is closed without a word
        assert said not in short_log.read_text(errors="replace")


@pytest.mark.server
def test_idle_keep_alive_connection_is_closed(short_timeouts_server):
    connection = http.client.HTTPConnection("127.0.0.1", short_timeouts_server, timeout=DISCONNECTED_WITHIN)
    try:
        connection.request("GET", "/health")
        assert connection.getresponse().read()
        assert connection.sock.recv(1) == b""  # the server closed it (a socket.timeout here: it did not)
    finally:
        connection.close()


def health_status(port: int) -> int:
    """The status of GET /health on a fresh connection."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", "/health")
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.mark.server
def test_connections_past_the_cap_get_503(short_timeouts_server):
    # Three idle connections and this request's make four, the cap: once the server has accepted the
    # three (it closes them after the 3 s header deadline), a request is refused.
    others = [socket.create_connection(("127.0.0.1", short_timeouts_server), timeout=10) for _ in range(3)]
    try:
        wait_until(lambda: health_status(short_timeouts_server) == 503, 20,
                   "a 503 for a request on a fifth connection")
    finally:
        for other in others:
            other.close()


def post_when_asked(port: int, body: bytes, asked: threading.Event, go: threading.Event,
                    whole: bool = True) -> tuple[int, dict]:
    """POST `body` with Expect: 100-continue: set `asked` when the server asks for the body (the request is in its
    handler), wait for `go`, then send the body (half of it, never the rest, unless `whole`); (status, answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: image/png\r\n"
                           + f"Expect: 100-continue\r\nContent-Length: {len(body)}\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply and (data := connection.recv(65536)):
            reply += data
        if not reply.startswith(b"HTTP/1.1 100 "):
            return 0, {"error": f"the server did not ask for the body: {reply[:60]!r}"}
        asked.set()
        go.wait(timeout=120)
        connection.sendall(body if whole else body[:len(body) // 2])
        reply = b""
        while data := connection.recv(65536):
            reply += data
    head, answer = reply.split(b"\r\n\r\n", 1)
    return int(head.split()[1]), json.loads(answer)


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return True
    return False


@pytest.mark.server
def test_sigterm_lets_requests_in_flight_finish(checkpoint, digits, tmp_path):
    """Issue 12, item 5: six requests in the server's hands at SIGTERM are answered 200 (uvicorn cancelled them
    after 5 s before); one whose body is still not all sent when the bound passes gets a 503 sentence, not a
    traceback."""
    log = tmp_path / "serve.log"
    image = digits[0][0]
    expected = as_json(None, predict(load_model(checkpoint), image)[0])["prediction"]
    answers: dict[int, tuple[int, dict]] = {}
    asked, go = [threading.Event() for _ in range(7)], threading.Event()
    with lenet_serve(checkpoint, log=log, args=["--shutdown-timeout", "15", "--body-timeout", "60"]) as (url, server):
        clients = [threading.Thread(target=lambda index=index: answers.update(
            {index: post_when_asked(port_of(url), image, asked[index], go, whole=index < 6)})) for index in range(7)]
        for client in clients:
            client.start()
        for index, event in enumerate(asked):
            assert event.wait(timeout=60), f"request {index} was not in the server's hands: {answers.get(index)}"
        server.terminate()
        wait_until(lambda: refuses_connections(port_of(url)), 30, "refusing new connections after SIGTERM")
        go.set()
        for client in clients:
            client.join(timeout=120)
        server.wait(timeout=60)
    for index in range(6):
        status, answer = answers[index]
        assert status == 200 and answer["prediction"] == expected, answer
    status, answer = answers[6]
    assert status == 503 and is_one_sentence(answer) and "the server stopped" in answer["error"]
    text = log.read_text(errors="replace")
    assert "Traceback" not in text and "CancelledError" not in text
    assert sum("still running when the server stopped" in line for line in text.splitlines()) == 1
