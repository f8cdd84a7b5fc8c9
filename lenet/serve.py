"""The prediction server: a FastAPI app with POST /predict, GET /health and a drawing page at /, and `lenet-serve`.

The model is loaded once, when the app is made. /predict takes the raw bytes of an image (any image/*
content type, application/octet-stream, or none) or a multipart/form-data upload with the image in the
field `file`, and answers like one `lenet-predict --json` object plus `image`, the 28x28 input the model
saw as a PNG data URL. Every refusal is a 4xx answer `{"error": "<one sentence>"}`; the server keeps
serving. Bodies are read in chunks and refused (413) as soon as they pass MAX_BODY_BYTES.
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lenet.errors import LenetError
from lenet.predict import Prediction, Predictor, as_json, load_model, predict
from lenet.preprocess import FORMATS, PreprocessError

try:  # the serve extra is optional: the rest of the package works without it
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
except ImportError as missing:
    MISSING_PACKAGE: str | None = missing.name
else:
    MISSING_PACKAGE = None

MAX_BODY_BYTES = 5 * 1024 * 1024  # far above any digit photo; refused unread when the length is declared
PAGE = Path(__file__).with_name("static") / "index.html"
UPLOAD_FIELD = "file"
ACCEPTED = (f"send the image's bytes as image/png, image/jpeg (any image/* type) or application/octet-stream, "
            f"or a multipart/form-data upload with the image in the field '{UPLOAD_FIELD}'")


def png_data_url(image: np.ndarray) -> str:
    """A (28, 28) float image in [0, 1] as a data:image/png;base64 URL, for an <img> to show."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def answer(model: Predictor, image: bytes, file: str | None) -> dict[str, Any]:
    """The JSON object for one image: as `lenet-predict --json`, plus the input the model saw."""
    prediction: Prediction = predict(model, image)[0]
    return {**as_json(file, prediction), "image": png_data_url(prediction.image)}


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it passes `limit` bytes (declared or actually sent)."""
    too_large = HTTPException(413, f"the request body is over the {limit / 2**20:g} MB limit: send a smaller "
                                   "image (a few hundred pixels a side is plenty for a digit).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large  # refused before a byte of it is read
    chunks, size = [], 0
    async for chunk in request.stream():  # a chunked upload declares no length: count as it arrives
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def uploaded_file(request: Request, body: bytes) -> tuple[str | None, bytes]:
    """(file name, bytes) of the one file in a multipart/form-data body already read into `body`."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        async with Request(request.scope, replay).form(max_files=1, max_fields=10, max_part_size=len(body) + 1) \
                as form:
            upload = form.get(UPLOAD_FIELD)
            if not isinstance(upload, UploadFile):
                raise HTTPException(400, f"the upload has no file in the field '{UPLOAD_FIELD}': send it as "
                                         f"{UPLOAD_FIELD}=@digit.png (curl -F) or name the form field "
                                         f"'{UPLOAD_FIELD}'.")
            return upload.filename, await upload.read()
    except HTTPException as error:
        if error.status_code != 400 or error.detail.startswith("the upload"):
            raise
        raise HTTPException(400, f"the multipart upload is malformed ({error.detail.rstrip('.')}): "
                                 f"{ACCEPTED}.") from None


def error_sentence(request: Request, error: HTTPException) -> str:
    """The one sentence for an HTTP error, including the ones FastAPI raises itself (404, 405)."""
    if error.status_code == 404:
        return f"nothing at {request.url.path}: use POST /predict, GET /health or GET /."
    if error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "another method")
        return f"{request.method} is not allowed on {request.url.path}: use {allowed}."
    return str(error.detail)


def create_app(model: Predictor, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The web app serving `model`: POST /predict, GET /health, and the drawing page at GET /."""
    if MISSING_PACKAGE is not None:
        raise LenetError(f"serving needs {MISSING_PACKAGE}, which is not installed: pip install -e '.[serve]'.")
    page = PAGE.read_text(encoding="utf-8")
    # No /docs: the interactive docs load scripts from a CDN, and the API is three routes described above.
    app = FastAPI(title="lenet", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error_sentence(request, error)}, status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"the server failed on this request ({type(error).__name__}): see its log."},
                            status_code=500)

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "checkpoint": str(model.checkpoint_path)}

    @app.post("/predict")
    async def predict_digit(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "application/octet-stream")
        media_type = content_type.split(";")[0].strip().lower()
        multipart = media_type == "multipart/form-data"
        if not (multipart or media_type.startswith("image/") or media_type == "application/octet-stream"):
            raise HTTPException(415, f"content type {media_type or '(empty)'} is not accepted: {ACCEPTED}.")
        body = await read_body(request, max_body_bytes)
        file, image = await uploaded_file(request, body) if multipart else (None, body)
        if not image:
            raise HTTPException(400, f"the {'uploaded file' if multipart else 'request body'} is empty: send the "
                                     f"bytes of an image of a digit ({FORMATS}).")
        try:
            # Preprocessing and the forward pass are CPU work: a worker thread keeps the event loop answering.
            return await run_in_threadpool(answer, model, image, file)
        except PreprocessError as error:
            raise HTTPException(400, str(error)) from None

    return app


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening; LenetError in one sentence if that is impossible."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:  # the port is taken, or the host is not an address of this machine
        raise LenetError(f"cannot listen on {host}:{port} ({error.strerror or error}): pass a free --port "
                         "or another --host.") from None


def build_parser() -> argparse.ArgumentParser:
    """The `lenet-serve` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-serve",
        description="Serve a trained LeNet-5 over HTTP: POST an image to /predict, or open / in a browser and "
                    "draw a digit.")
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="the checkpoint to serve (default: best.pt of the most recent run in --runs-dir)")
    parser.add_argument("--runs-dir", metavar="DIR", default="runs",
                        help="where to look for the most recent run when --checkpoint is not given (default: runs)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on; 0.0.0.0 exposes the server to the network "
                             "(default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="the TCP port; 0 picks a free one (default: 8000)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request (default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-serve` / `python -m lenet.serve`: serves until Ctrl+C; 2 if it cannot start."""
    args = build_parser().parse_args(argv)
    try:
        model = load_model(args.checkpoint, runs_dir=args.runs_dir)
        app = create_app(model)
        server_socket = listen(args.host, args.port)
    except LenetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # One image is too little work to split across cores; requests run in parallel threads instead.
    torch.set_num_threads(1)
    host, port = server_socket.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {model.checkpoint_path} at http://{url_host}:{port}/ (Ctrl+C to stop)", flush=True)
    config = uvicorn.Config(app, log_level="info", access_log=not args.quiet, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[server_socket])
    return 0


if __name__ == "__main__":
    sys.exit(main())
