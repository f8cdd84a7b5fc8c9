"""What every lenet command shares: one-line errors and exit codes, safe printing, the model flags,
and the one rule for which model is used by default.

The default model (for `lenet-predict`, `lenet-serve`, `draw_and_predict()` and the notebooks) is
`best.pt` of the newest *completed* run directly under the runs folder: one that has
`checkpoints/best.pt` and `metrics.json` (written when training ends). Runs under `runs/notebooks/`
are never picked, so running the notebooks never changes the model the commands use.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

from lenet.errors import LenetError

RUNS_DIR = "runs"
NOTEBOOK_RUNS = "notebooks"  # runs/notebooks/: the notebooks' own runs, never the default model


def run_command(body: Callable[[], int]) -> int:
    """Run a command's body: a LenetError prints as one line `error: ...` on stderr and exits 2."""
    try:
        return body()
    except LenetError as error:
        print_error(error)
        return 2


def command_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The parser of one lenet command; its help texts state their defaults."""
    return argparse.ArgumentParser(prog=prog, description=description)


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


def default_checkpoint(runs_dir: str | os.PathLike = RUNS_DIR) -> Path:
    """best.pt of the newest completed run directly under `runs_dir` (never one under runs/notebooks/)."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LenetError(f"--runs-dir {runs_dir} is a file, not a folder: pass the folder that holds the runs.")
    completed = []
    if runs_dir.is_dir():
        for run in runs_dir.iterdir():
            best, metrics = run / "checkpoints" / "best.pt", run / "metrics.json"
            if run.name != NOTEBOOK_RUNS and best.is_file() and metrics.is_file():
                completed.append((metrics.stat().st_mtime, run.name, best))
    if not completed:
        raise LenetError(f"no completed training run in {runs_dir.as_posix().rstrip('/')}/: train one with "
                         "`make train` (or lenet-train), or pass --checkpoint.")
    return max(completed)[2]
