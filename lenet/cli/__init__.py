"""The command-line tools, one module each: `train` (lenet-train), `predict` (lenet-predict), `score` (lenet-score),
`serve` (lenet-serve) and `export` (lenet-export). Each holds its command's `main`, parser and printing; the library
it calls returns values. This module holds what they share: one-line errors and exit codes, the model flags, the
model announcement, and flags made from a settings dataclass (`Config`, `ServerSettings`), each help text stating
its default.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable, Sequence

from lenet.config import field_type, flag
from lenet.errors import LenetError
from lenet.files import printable
from lenet.runs import NOTEBOOK_RUNS, RUNS_DIR


def run_command(body: Callable[[], int]) -> int:
    """Run a command's body: a LenetError prints as one line `error: ...` on stderr and exits 2."""
    try:
        return body()
    except LenetError as error:
        print_error(error)
        return 2


def run_parsed(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
               argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (bad flags exit 2 through argparse), then `run_command` the body with the arguments."""
    args = parser.parse_args(argv)
    return run_command(lambda: body(args))


def print_error(message: object) -> None:
    """`error: <message>` on stderr, printable whatever bytes a file name in it holds."""
    print(f"error: {printable(str(message))}", file=sys.stderr, flush=True)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --runs-dir: which trained model a command loads."""
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="the checkpoint to use (default: best.pt of the newest completed run in --runs-dir)")
    parser.add_argument("--runs-dir", metavar="DIR", default=RUNS_DIR,
                        help=f"where to look for the newest completed run when --checkpoint is not given "
                             f"(default: {RUNS_DIR}; {RUNS_DIR}/{NOTEBOOK_RUNS}/ is never used)")


def load_announced(args: argparse.Namespace):
    """The model a command's --checkpoint / --runs-dir name, said on stderr: "using <run>/checkpoints/best.pt (...)"."""
    from lenet.inference.predict import load_model  # imported here: `--help` need not load torch

    predictor = load_model(args.checkpoint, runs_dir=args.runs_dir)
    print(f"using {predictor.summary()}", file=sys.stderr, flush=True)
    return predictor


def add_setting_flags(parser: argparse.ArgumentParser | Any, settings: type) -> None:
    """One flag per field of the `settings` dataclass that has a "help": `--field-name` (or its "flag"), typed as the
    field, bools on/off, tuples repeatable. Every default is None, so `typed_settings` knows what the user typed; the
    help text states the field's real default."""
    for field in dataclasses.fields(settings):
        if "help" not in field.metadata:
            continue
        name, default = field.metadata.get("flag") or flag(field.name), field.default
        text = field.metadata["help"]
        if "(default:" not in text:
            text += f" (default: {'none' if default in (None, ()) else default})"
        if field.type in ("bool", bool):
            parser.add_argument(name, dest=field.name, action=argparse.BooleanOptionalAction, default=None, help=text)
        elif isinstance(default, tuple):  # repeatable: --allow-origin A --allow-origin B
            parser.add_argument(name, dest=field.name, action="append", default=None,
                                metavar=field.metadata.get("metavar", field.name.upper()), help=text)
        else:
            parser.add_argument(name, dest=field.name, type=field_type(field), default=None,
                                metavar=field.metadata.get("metavar", field.name.upper()), help=text)


def typed_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of `settings` whose flags the user typed, with their values (a repeated flag as a tuple)."""
    typed = {field.name: getattr(args, field.name) for field in dataclasses.fields(settings)
             if getattr(args, field.name, None) is not None}
    return {name: tuple(value) if isinstance(value, list) else value for name, value in typed.items()}
