"""lenet-serve: /predict answers like lenet-predict, refuses bad requests with one sentence and keeps serving,
and a real server on loopback answers concurrent clients correctly (benchmarks/load_test.py, kept small here)."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import socket
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import real_mnist_dir, synthetic_digits

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[dev]'")
from fastapi.testclient import TestClient  # noqa: E402

from lenet.predict import as_json, load_model, predict  # noqa: E402
from lenet.serve import MAX_BODY_BYTES, create_app, main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
JSON_KEYS = {"file", "prediction", "probability", "probabilities", "error", "image"}
PNG = {"Content-Type": "image/png"}
N_DIGITS = 20


def load_test_script():
    """benchmarks/load_test.py as a module: the test runs the same load test, only shorter."""
    if "load_test" not in sys.modules:
        spec = importlib.util.spec_from_file_location("load_test", ROOT / "benchmarks" / "load_test.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["load_test"] = module  # its dataclass looks itself up there
        spec.loader.exec_module(module)
    return sys.modules["load_test"]


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def huge_png(side: int = 9_000) -> bytes:
    """An 8x8 PNG whose header claims side x side pixels, as a decompression bomb does."""
    png = png_bytes(Image.new("L", (8, 8), 255))
    fields = b"IHDR" + struct.pack(">II", side, side) + png[24:29]
    return png[:12] + fields + struct.pack(">I", zlib.crc32(fields)) + png[33:]


@pytest.fixture(scope="module")
def checkpoint(request) -> Path:
    """A model trained on real MNIST when the data is here (so digits are read right), else the tiny one."""
    return request.getfixturevalue("mnist_checkpoint" if real_mnist_dir() else "tiny_checkpoint")


@pytest.fixture(scope="module")
def digits() -> list[tuple[bytes, int]]:
    """(PNG, label): MNIST test digits scaled up to 112 px, black ink on white (synthetic ones without the data)."""
    if real_mnist_dir():
        return load_test_script().mnist_digit_pngs(N_DIGITS, real_mnist_dir())
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


def test_health_names_the_checkpoint(client, checkpoint):
    assert client.get("/health").json() == {"status": "ok", "checkpoint": str(checkpoint)}


def test_page_offers_a_drawing_pad(client):
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    for part in ('<canvas id="pad" width="280" height="280"', 'id="clear"', "draw a digit", "pointerdown",
                 'fetch("predict"'):
        assert part in response.text


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
    "enormous image": ("POST", {"content": huge_png(), "headers": PNG}, 400, "too large (9000x9000"),
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
    assert set(answer) == {"error"}
    assert message in answer["error"]
    assert answer["error"].endswith(".") and "\n" not in answer["error"]
    still_serving(client, digits[0][0])


def test_unknown_path_gets_a_json_sentence(client):
    response = client.get("/predictions")
    assert response.status_code == 404
    assert response.json() == {"error": "nothing at /predictions: use POST /predict, GET /health or GET /."}


def test_missing_model_stops_with_the_lenet_predict_sentence(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (f"error: no trained model in {tmp_path.as_posix()}/: run `make train` first "
                                       "or pass --checkpoint.\n")


def test_port_in_use_stops_with_a_sentence(tiny_checkpoint, capsys):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["--checkpoint", str(tiny_checkpoint), "--port", str(port)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: cannot listen on 127.0.0.1:{port}") and error.count("\n") == 1


@pytest.fixture(scope="module")
def live_server(checkpoint, tmp_path_factory):
    """`lenet-serve` in a subprocess on a free loopback port; yields its base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with load_test_script().serving(checkpoint, log=log) as url:
        yield url


def test_concurrent_clients_get_correct_answers_without_errors(live_server, checkpoint, digits):
    script = load_test_script()
    images = [image for image, _ in digits]
    result = script.run_load(live_server, images, requests=300, clients=8, time_limit=120)
    assert result.errors == []
    assert result.requests == 300
    assert script.wrong_answers(result, script.expected_predictions(checkpoint, images)) == []


def test_declared_oversize_body_is_refused_before_it_is_sent(live_server):
    port = int(live_server.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
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
