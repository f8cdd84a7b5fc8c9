"""`lenet-serve`: a trained model served over HTTP (`lenet.apps.serve`), its limits one flag each."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lenet.apps.serve import ServerSettings, create_app, listen, require_serve_extra, run
from lenet.cli import add_model_arguments, add_setting_flags, run_command, typed_settings
from lenet.inference.predict import load_model


def serve_parser() -> argparse.ArgumentParser:
    """The `lenet-serve` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-serve", description="Serve a trained LeNet-5 over HTTP: POST an image to /predict, or open / in "
        "a browser and draw a digit.")
    add_model_arguments(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="the address to listen on; 0.0.0.0 exposes the server to the network "
                             "(default: 127.0.0.1, this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="the TCP port; 0 picks a free one (default: 8000)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request (default: off)")
    add_setting_flags(parser.add_argument_group("limits"), ServerSettings)
    return parser


def serve(args: argparse.Namespace) -> int:
    """Load the model and serve it until SIGTERM or Ctrl+C."""
    require_serve_extra()
    settings = ServerSettings(**typed_settings(args, ServerSettings))
    predictor = load_model(args.checkpoint, runs_dir=args.runs_dir)
    app = create_app(predictor, settings)
    server_socket = listen(args.host, args.port)
    host, port = server_socket.getsockname()[:2]
    url_host = f"[{host}]" if ":" in host else host
    print(f"serving {predictor.summary()} at http://{url_host}:{port}/ (Ctrl+C to stop)", flush=True)
    run(app, settings, server_socket, access_log=not args.quiet)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-serve` / `python -m lenet.cli.serve`: serves until Ctrl+C; 2 if it cannot start."""
    args = serve_parser().parse_args(argv)
    return run_command(lambda: serve(args))


if __name__ == "__main__":
    sys.exit(main())
