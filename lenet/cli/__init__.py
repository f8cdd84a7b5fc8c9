"""The command-line tools: what every lenet command shares (one-line errors and exit codes, safe printing,
help that states each default, the model flags), and `lenet-train` in `lenet.cli.train`.

The other commands keep their `main` beside what they run: `lenet.inference.predict` (lenet-predict),
`lenet.inference.score` (lenet-score), `lenet.apps.export` (lenet-export), `lenet.apps.serve` (lenet-serve).
Which model a command uses by default is `lenet.runs.default_checkpoint`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from lenet.errors import LenetError
from lenet.runs import NOTEBOOK_RUNS, RUNS_DIR


def run_command(body: Callable[[], int]) -> int:
    """Run a command's body: a LenetError prints as one line `error: ...` on stderr and exits 2."""
    try:
        return body()
    except LenetError as error:
        print_error(error)
        return 2


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of one lenet command; its help texts state their defaults."""
    return argparse.ArgumentParser(prog=prog, description=description, formatter_class=DefaultsHelpFormatter)


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's "(default: X)" after each help text, except where the default is None or off: the text says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default in (None, False) or "(default:" in (action.help or ""):
            return action.help or ""
        return super()._get_help_string(action)


def run_parsed(parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
               argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (bad flags exit 2 through argparse), then `run_command` the body with the arguments."""
    args = parser.parse_args(argv)
    return run_command(lambda: body(args))


def print_error(message: object) -> None:
    """`error: <message>` on stderr, printable whatever bytes a file name in it holds."""
    print(f"error: {printable(str(message))}", file=sys.stderr, flush=True)


def printable(text: str) -> str:
    """`text` safe to print and to encode as UTF-8 JSON: undecodable bytes of a file name become \\xNN."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a file name
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--checkpoint and --runs-dir: which trained model a command loads."""
    parser.add_argument("--checkpoint", metavar="PATH", default=None,
                        help="the checkpoint to use (default: best.pt of the newest completed run in --runs-dir)")
    parser.add_argument("--runs-dir", metavar="DIR", default=RUNS_DIR,
                        help=f"where to look for the newest completed run when --checkpoint is not given "
                             f"(default: {RUNS_DIR}; {RUNS_DIR}/{NOTEBOOK_RUNS}/ is never used)")
