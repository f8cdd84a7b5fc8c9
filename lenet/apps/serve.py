"""The prediction server: a FastAPI app with POST /predict, GET /health, the drawing page at / and its files
under /static/ (the `lenet-serve` command is `lenet.cli.serve`).

The model is loaded once, when the app is made. /predict takes the raw bytes of an image (any image/*
content type, application/octet-stream, or none) or a multipart/form-data upload with the image in the
field `file`, and answers like one `lenet-predict --json` object plus `image`, the 28x28 input the model
saw as a PNG data URL. Every refusal is a 4xx or 503 answer `{"error": "<one sentence>"}`; the server
keeps serving.

What one server takes on is bounded (`ServerSettings`, one flag per field): bodies are refused (413) as
soon as they pass 5 MB, and images whose header claims more than --max-pixels before a pixel is
decoded, since a small PNG can unpack to hundreds of MB. At most --max-predictions images are decoded
at once, on as many worker threads (each thread's allocator keeps what it once held, so few threads
keep memory low); a request that waits --queue-timeout for a turn gets 503 with Retry-After. Every
connection has deadlines for its headers and its body, uvicorn closes idle keep-alive connections and
answers 503 past --max-connections, and on SIGTERM the server stops accepting and lets requests in
flight finish for up to --shutdown-timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import ctypes
import functools
import io
import logging
import os
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import torch
from PIL import Image

from lenet.apps import STATIC
from lenet.config import flag, setting
from lenet.errors import LenetError
from lenet.files import printable
from lenet.inference.images import png_data_url
from lenet.inference.predict import Prediction, Predictor, as_json, predict
from lenet.inference.preprocess import IMAGE_FORMATS, PreprocessError, to_grayscale

try:  # the serve extra is optional: the rest of the package works without it
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.middleware.cors import CORSMiddleware
    from starlette.requests import ClientDisconnect
    from starlette.staticfiles import StaticFiles
except ImportError as missing:
    MISSING_PACKAGE: str | None = missing.name
else:
    MISSING_PACKAGE = None

log = logging.getLogger("lenet.apps.serve")

MAX_BODY_BYTES = 5 * 1024 * 1024  # far above any digit photo; refused unread when the length is declared
MAX_HEADER_BYTES = 16 * 1024  # request line and headers; uvicorn answers 400 past it
RELEASE_ABOVE_PIXELS = 1_000_000  # after a larger image, freed memory is handed back to the system
# Named here rather than guessed: mimetypes reads the system's tables, and some send .js as text/plain.
CONTENT_TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json"}
UPLOAD_FIELD = "file"
ALLOW_ORIGIN = "--allow-origin"  # the flag of ServerSettings.allow_origins, said once per origin
ACCEPTED = (f"send the image's bytes as image/png, image/jpeg (any image/* type) or application/octet-stream, "
            f"or a multipart/form-data upload with the image in the field '{UPLOAD_FIELD}'")

try:  # glibc keeps freed memory in per-thread arenas; malloc_trim hands it back (other C libraries lack it)
    MALLOC_TRIM: Callable[[int], int] | None = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError, TypeError):
    MALLOC_TRIM = None


@dataclass(frozen=True)
class ServerSettings:
    """What one server takes on at once and how long it waits; each field with a "help" is the `lenet-serve` flag of
    that name (`lenet.cli.add_setting_flags`)."""

    max_pixels: int = setting(16_000_000, "PIXELS", "refuse (413) images whose header claims more pixels, before "
                              "decoding them (a 12 MP phone photo fits)")
    max_predictions: int = setting(2, "N", "images decoded and predicted at once, each on its own worker thread; "
                                   "memory grows with it")
    queue_timeout: float = setting(3.0, "SECONDS", "seconds a request waits for a free prediction before 503 with "
                                   "Retry-After")
    max_connections: int = setting(128, "N", "open connections (uvicorn's limit_concurrency); past them requests "
                                   "get 503")
    header_timeout: float = setting(10.0, "SECONDS", "seconds to send a request's line and headers before the "
                                    "connection is closed")
    body_timeout: float = setting(20.0, "SECONDS", "seconds to send a request's body once its headers are in, before "
                                  "408 (5 MB in 20 s is 250 KB/s)")
    keep_alive_timeout: float = setting(5.0, "SECONDS", "seconds an idle keep-alive connection stays open")
    shutdown_timeout: float = setting(30.0, "SECONDS", "on SIGTERM or Ctrl+C, seconds requests in flight have to "
                                      "finish; later ones get 503")
    allow_origins: tuple[str, ...] = setting((), "ORIGIN", "let pages from this web origin (https://host:port) call "
                                             "the API (CORS); repeat for more (default: none, no CORS header)",
                                             flag=ALLOW_ORIGIN)
    max_body_bytes: int = MAX_BODY_BYTES  # request bodies over this many bytes are refused (413); not a flag

    def __post_init__(self) -> None:
        for setting in fields(self):
            value = getattr(self, setting.name)
            if isinstance(value, (int, float)) and not value > 0:
                raise LenetError(f"{setting.metadata.get('flag') or flag(setting.name)} must be above 0, got {value:g}.")
        for origin in self.allow_origins:
            if origin != "*" and not origin.startswith(("http://", "https://")):
                raise LenetError(f"{ALLOW_ORIGIN} {origin} is not a web origin: pass one like "
                                 "https://example.org or http://localhost:3000, or *.")


def prediction_answer(predictor: Predictor, image: bytes, file: str | None, pixels: int) -> dict[str, Any]:
    """/predict's JSON object for an image of `pixels` pixels: as `lenet-predict --json`, plus the input the model
    saw; after a large image, the memory it took is handed back to the system."""
    try:
        prediction: Prediction = predict(predictor, image)[0]
        return {**as_json(file, prediction), "image": png_data_url(prediction.image)}
    finally:
        if pixels > RELEASE_ABOVE_PIXELS:
            release_memory()


def release_memory() -> None:
    """Hand freed heap memory back to the system, which glibc would otherwise keep for the thread that freed it."""
    if MALLOC_TRIM is not None:
        MALLOC_TRIM(0)


def check_header(image: bytes, max_pixels: int) -> int:
    """The image's pixel count, read from its header before any pixel is decoded.

    HTTPException 413 over `max_pixels`, 400 for a colour mode the preprocessing cannot convert; 0 if
    Pillow cannot read the header at all (then `predict` says why, in lenet-predict's words).
    """
    too_many = (f"over this server's limit of {max_pixels / 1e6:g} megapixels: shrink it (a few hundred pixels "
                "a side is plenty for a digit).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(image))  # reads the header only
    except Image.DecompressionBombError:  # Pillow's own limit, far above ours: the header alone gives it away
        raise HTTPException(413, f"the image's header claims {too_many}") from None
    except Exception:
        return 0
    with opened:
        (width, height), mode = opened.size, opened.mode
    if width * height > max_pixels:
        raise HTTPException(413, f"the image is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels), "
                                 f"{too_many}")
    if not convertible(mode):
        raise HTTPException(400, f"the image's colour mode {printable(mode)} cannot be read as a digit: save it "
                                 f"as an RGB or grayscale image ({IMAGE_FORMATS}).")
    return width * height


@functools.lru_cache(maxsize=None)
def convertible(mode: str) -> bool:
    """Whether lenet's preprocessing turns an image in this Pillow mode into grayscale (tried on 2x2 pixels)."""
    try:
        to_grayscale(Image.new(mode, (2, 2)))
    except Exception:  # ValueError "conversion from LAB to RGB not supported", or a mode Pillow cannot make
        return False
    return True


class PredictionSlots:
    """At most `size` predictions at once, on `size` worker threads; a request waits `wait` s for a turn, then 503."""

    def __init__(self, size: int, wait: float) -> None:
        self.size, self.wait = size, wait
        self.free = asyncio.Semaphore(size)
        self.workers = ThreadPoolExecutor(size, thread_name_prefix="predict")

    async def run(self, function: Callable[..., Any], *args: Any) -> Any:
        """`function(*args)` on a worker thread once a slot is free."""
        try:
            async with asyncio.timeout(self.wait):
                await self.free.acquire()
        except TimeoutError:
            raise HTTPException(503, f"the server is busy: {self.size} predictions are running and this request "
                                     f"waited {self.wait:g} s for a turn; try again in a moment.",
                                headers={"Retry-After": "1"}) from None
        try:
            return await asyncio.get_running_loop().run_in_executor(self.workers, functools.partial(function, *args))
        finally:
            self.free.release()

    def close(self) -> None:
        self.workers.shutdown(wait=False)


def client_name(address: Sequence[Any] | None) -> str:
    """host:port of a client's (host, port) address, for log lines; "a client" when the server was not told."""
    return f"{address[0]}:{address[1]}" if address else "a client"


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request body; 413 once it passes `limit` bytes (declared or sent), 408 if it takes over `timeout` s."""
    too_large = HTTPException(413, f"the request body is over the {limit / 2**20:g} MB limit: send a smaller "
                                   "image (a few hundred pixels a side is plenty for a digit).")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large  # refused before a byte of it is read
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():  # a chunked upload declares no length: count as it arrives
                size += len(chunk)
                if size > limit:
                    raise too_large
                chunks.append(chunk)
    except TimeoutError:
        log.info("%s sent %d bytes of its body in %g s; answered 408 and closed the connection",
                 client_name(request.client), size, timeout)
        raise HTTPException(408, f"the request body did not arrive within {timeout:g} s ({size} bytes came): send "
                                 "the image in one go.", headers={"Connection": "close"}) from None
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
            name = printable(upload.filename) if upload.filename is not None else None
            return name, await upload.read()
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


def page_files() -> StaticFiles:
    """Starlette's StaticFiles on lenet/apps/static/, serving only the kinds of file in CONTENT_TYPES, with that type.

    StaticFiles keeps requests inside the folder and lists no folder; the suffix check also keeps out
    __init__.py, __pycache__/ and dotfiles.
    """

    class PageFiles(StaticFiles):  # made here, not at import: without the serve extra there is no StaticFiles
        async def get_response(self, path: str, scope: dict) -> Response:
            content_type = CONTENT_TYPES.get(os.path.splitext(path)[1].lower())
            if content_type is None or os.path.basename(path).startswith("."):
                raise HTTPException(404)
            response = await super().get_response(path, scope)
            if response.status_code == 200:  # not a 304, which has no body to describe
                charset = "; charset=utf-8" if content_type.startswith("text/") else ""
                response.headers["content-type"] = content_type + charset
            return response

    return PageFiles(directory=STATIC)


class ShutdownCancellation:
    """ASGI middleware: a request still running when the shutdown bound passes is cancelled by uvicorn; it gets a
    503 sentence and one WARNING line instead of a 500 and a CancelledError traceback."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def send_and_note(message: dict) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:  # not re-raised: uvicorn only cancels a request to give up on it
            log.warning("%s %s %s was still running when the server stopped (--shutdown-timeout)%s",
                        client_name(scope.get("client")), scope["method"], scope["path"],
                        "" if started else "; answered 503")
            if not started:
                refusal = JSONResponse({"error": "the server stopped before this request finished: send it again "
                                                 "once the server is back."}, status_code=503,
                                       headers={"Retry-After": "5", "Connection": "close"})
                await refusal(scope, receive, send)


def require_serve_extra() -> None:
    """LenetError naming the missing package if the serve extra is not installed."""
    if MISSING_PACKAGE is not None:
        raise LenetError(f"serving needs {MISSING_PACKAGE}, which is not installed: pip install -e '.[serve]'.")


def create_app(predictor: Predictor, settings: ServerSettings | None = None) -> FastAPI:
    """The web app serving `predictor`: POST /predict, GET /health, the drawing page at GET / and its files in /static/."""
    require_serve_extra()
    settings = settings or ServerSettings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.slots = PredictionSlots(settings.max_predictions, settings.queue_timeout)
        yield
        app.state.slots.close()

    # No /docs: the interactive docs load scripts from a CDN, and the API is the routes described above.
    app = FastAPI(title="lenet", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    if settings.allow_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.allow_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])
    app.add_middleware(ShutdownCancellation)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return JSONResponse({"error": error_sentence(request, error)}, status_code=error.status_code,
                            headers=error.headers)

    @app.exception_handler(ClientDisconnect)
    async def client_left(request: Request, error: ClientDisconnect) -> Response:
        log.info("%s disconnected before sending the whole request (%s %s); nothing to answer",
                 client_name(request.client), request.method, request.url.path)
        return Response(status_code=400)  # nobody is left to read it

    @app.exception_handler(Exception)
    async def server_error(request: Request, error: Exception) -> JSONResponse:
        return JSONResponse({"error": f"the server failed on this request ({type(error).__name__}): see its log."},
                            status_code=500)

    @app.get("/")
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type=CONTENT_TYPES[".html"])

    app.mount("/static", page_files(), name="static")

    @app.get("/health")
    async def health() -> dict[str, str]:
        # What was loaded, not whether its file is still there: the model lives in memory.
        return {"status": "ok", "model": predictor.summary(), "loaded_at": predictor.loaded_at}

    @app.post("/predict")
    async def predict_digit(request: Request) -> dict[str, Any]:
        content_type = request.headers.get("content-type", "application/octet-stream")
        media_type = content_type.split(";")[0].strip().lower()
        multipart = media_type == "multipart/form-data"
        if not (multipart or media_type.startswith("image/") or media_type == "application/octet-stream"):
            raise HTTPException(415, f"content type {media_type or '(empty)'} is not accepted: {ACCEPTED}.")
        body = await read_body(request, settings.max_body_bytes, settings.body_timeout)
        file, image = await uploaded_file(request, body) if multipart else (None, body)
        if not image:
            raise HTTPException(400, f"the {'uploaded file' if multipart else 'request body'} is empty: send the "
                                     f"bytes of an image of a digit ({IMAGE_FORMATS}).")
        pixels = check_header(image, settings.max_pixels)
        try:
            return await request.app.state.slots.run(prediction_answer, predictor, image, file, pixels)
        except PreprocessError as error:
            raise HTTPException(400, str(error)) from None

    return app


def http_protocol(header_timeout: float) -> type:
    """uvicorn's HTTP/1.1 protocol plus what it lacks: a deadline for each request's line and headers.

    uvicorn's keep-alive timer stops at a connection's first byte, so a client that sends half a
    request line, or nothing after an answer it got while its body was unread, would hold the
    connection forever. Here the clock starts when a connection opens and after each answer, and
    stops when the next request's headers are complete. H11Protocol is private to uvicorn:
    tests/test_serve.py checks that it still has what this relies on, and pyproject.toml caps uvicorn.
    """
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineProtocol(H11Protocol):
        header_clock: asyncio.TimerHandle | None = None
        waiting_cycle: object = None  # the request the clock started after; a new one stops it

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.start_header_clock()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.cycle is not self.waiting_cycle:
                self.stop_header_clock()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle.response_complete:  # no pipelined request under way
                self.start_header_clock()

        def connection_lost(self, exc: Exception | None) -> None:
            self.stop_header_clock()
            super().connection_lost(exc)

        def start_header_clock(self) -> None:
            self.stop_header_clock()
            self.waiting_cycle = self.cycle
            self.header_clock = self.loop.call_later(header_timeout, self.headers_too_slow)

        def stop_header_clock(self) -> None:
            if self.header_clock is not None:
                self.header_clock.cancel()
                self.header_clock = None

        def headers_too_slow(self) -> None:
            self.header_clock = None
            if self.transport.is_closing():
                return
            if self.conn.trailing_data[0]:  # part of a request came; a silent idle connection is closed quietly
                log.info("%s sent no complete request headers within %g s; closed the connection",
                         client_name(self.client), header_timeout)
            self.transport.close()

    return HeaderDeadlineProtocol


def log_config() -> dict[str, Any]:
    """uvicorn's logging setup, with this module's lines printed the same way."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["loggers"]["lenet"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def server_config(app: FastAPI, settings: ServerSettings, access_log: bool = True) -> uvicorn.Config:
    """uvicorn's settings for `app`: its own timeouts and caps, and the header deadline it lacks."""
    return uvicorn.Config(app, http=http_protocol(settings.header_timeout), ws="none", lifespan="on",
                          log_config=log_config(), log_level="info", access_log=access_log,
                          limit_concurrency=settings.max_connections, timeout_keep_alive=settings.keep_alive_timeout,
                          timeout_graceful_shutdown=settings.shutdown_timeout,
                          h11_max_incomplete_event_size=MAX_HEADER_BYTES)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to (host, port) and listening; LenetError in one sentence if that is impossible."""
    try:
        return socket.create_server((host, port), family=socket.AF_INET6 if ":" in host else socket.AF_INET)
    except OSError as error:  # the port is taken, or the host is not an address of this machine
        raise LenetError(f"cannot listen on {host}:{port} ({error.strerror or error}): pass a free --port "
                         "or another --host.") from None


def run(app: FastAPI, settings: ServerSettings, server_socket: socket.socket, access_log: bool = True) -> None:
    """Serve `app` on a listening socket until SIGTERM or Ctrl+C; requests in flight get --shutdown-timeout."""
    require_serve_extra()
    # One image is too little work to split across cores; requests run in parallel threads instead.
    torch.set_num_threads(1)
    try:
        uvicorn.Server(server_config(app, settings, access_log=access_log)).run(sockets=[server_socket])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C once it has shut down gracefully
        pass
