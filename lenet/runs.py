"""Run folders: their layout, making and claiming one, finding what to resume, and the default model.

Every training run owns one folder; this module is the only one that knows its layout:

    runs/<run_name>/
        config.json               the run's Config, written when it starts
        checkpoints/epoch_NN.pt   one per epoch
        checkpoints/best.pt       the epoch with the lowest validation loss (early stopping's choice)
        checkpoints/last.pt       the newest epoch: what --resume continues from
        events.out.tfevents.*     TensorBoard's logs
        metrics.json              the result, written when the run ends: a run with it is *completed*
    runs/.<run_name>.lock         held by the process training that run; the OS lets go when it exits
    runs/notebooks/               the notebooks' own runs, never the default model

The default model (for `lenet-predict`, `lenet-serve`, `draw_and_predict()` and the notebooks) is
`best.pt` of the newest completed run directly under the runs folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

from lenet.errors import LenetError
from lenet.files import atomic_write, checked_path, explain_os_error, write_json

RUNS_DIR = "runs"
NOTEBOOK_RUNS = "notebooks"  # runs/notebooks/: the notebooks' own runs, never the default model
CONFIG, METRICS, CHECKPOINTS = "config.json", "metrics.json", "checkpoints"
BEST, LAST = "best.pt", "last.pt"


def checkpoint_path(run_dir: Path, which: str | int) -> Path:
    """runs/<run>/checkpoints/best.pt, last.pt, or epoch_NN.pt for an epoch number."""
    return Path(run_dir) / CHECKPOINTS / (f"epoch_{which:02d}.pt" if isinstance(which, int) else which)


def run_dir_of(checkpoint: Path) -> Path:
    """The run folder a checkpoint file belongs to."""
    return Path(checkpoint).parent.parent


def epoch_checkpoints(folder: Path) -> list[Path]:
    """The epoch_NN.pt files in a checkpoints folder, oldest first."""
    return sorted(Path(folder).glob("epoch_*.pt"))


def write_config(run_dir: Path, settings: dict[str, Any]) -> None:
    """config.json: the run's settings (`Config.to_dict()`), written when it starts and when it is continued."""
    write_json(Path(run_dir) / CONFIG, settings)


def write_metrics(run_dir: Path, result: dict[str, Any]) -> None:
    """metrics.json: the run's result; a run that has it is completed."""
    write_json(Path(run_dir) / METRICS, result)


def checkpoint_name(checkpoint: Path) -> str:
    """A checkpoint's name without an absolute path: "<run>/checkpoints/best.pt", or the file's own name."""
    checkpoint, run = Path(checkpoint), run_dir_of(checkpoint).name
    return f"{run}/{CHECKPOINTS}/{checkpoint.name}" if checkpoint.parent.name == CHECKPOINTS and run else \
        checkpoint.name


def run_test_accuracy(checkpoint: Path) -> float | None:
    """The test accuracy in metrics.json of the run a best.pt belongs to, or None (another file, or no result)."""
    metrics = run_dir_of(checkpoint) / METRICS
    try:
        if Path(checkpoint).name != BEST or not metrics.is_file():
            return None
        value = json.loads(metrics.read_text(encoding="utf-8")).get("test_accuracy")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) else None


def new_run_dir(runs_dir: str | os.PathLike, run_name: str | None, dataset: str, optimizer: str) -> Path:
    """Where a new run goes: <runs_dir>/<run_name>/, or a name made from the dataset, optimizer and time."""
    runs_dir = Path(runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LenetError(f"--runs-dir {runs_dir} is a file, not a folder: pass a folder (it is created if missing).")
    return runs_dir / (run_name or f"{dataset}-{optimizer}-{datetime.now():%Y%m%d-%H%M%S}")


def make_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Create the folder of a new run. An existing run is an error unless `overwrite`; a run that never saved a
    checkpoint (it failed or was stopped in its first epoch) is simply reused. Call it holding `claim(run_dir)`."""
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise LenetError(f"{run_dir} exists and is not a run folder: choose another --run-name.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        if not (run_dir / CONFIG).is_file():
            raise LenetError(f"{run_dir} already exists and is not a lenet run (it has no {CONFIG}): "
                             "choose another --run-name; --overwrite never deletes it.")
        if any((run_dir / CHECKPOINTS).glob("*.pt")) and not overwrite:
            raise LenetError(f"{run_dir} already exists: choose another --run-name, continue it with "
                             f"--resume {run_dir}, or replace it with --overwrite.")
        shutil.rmtree(run_dir)  # a lenet run: replaced as asked, or one that never saved a checkpoint
    run_dir.mkdir(parents=True, exist_ok=True)


def resume_point(resume: str | os.PathLike) -> tuple[Path, Path]:
    """(checkpoint to continue from, its run folder) for --resume RUN or --resume RUN/checkpoints/epoch_NN.pt."""
    resume = Path(resume)
    path = resume if resume.suffix == ".pt" else checkpoint_path(resume, LAST)
    run_dir = run_dir_of(path)
    if not path.exists() and resume.is_dir():
        raise LenetError(f"{run_dir} has no checkpoint to continue from (it stopped before its first epoch "
                         "ended): start it again without --resume.")
    if not run_dir.is_dir():
        raise LenetError(f"--resume {resume} is not a run folder or one of its checkpoints: pass runs/<run> or "
                         "runs/<run>/checkpoints/epoch_NN.pt.")
    return path, run_dir


def point_best_at(run_dir: Path, epoch: int) -> None:
    """Make best.pt a copy of epoch_NN.pt (a run continued from an earlier checkpoint may have a best.pt from an
    epoch it no longer has), atomically."""
    data = checkpoint_path(run_dir, epoch).read_bytes()
    atomic_write(checkpoint_path(run_dir, BEST), lambda file: file.write(data))


def lock_path(run_dir: Path) -> Path:
    """runs/.<run_name>.lock: beside the folder, so that replacing the folder never drops the lock."""
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def claim(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for this process: a second claimant (another terminal, notebook kernel or `&` job)
    gets a LenetError naming the holder's pid at once. The OS drops the lock when the process dies, so a
    killed run never blocks its name."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; one run per name is then up to the user
        yield
        return
    path = lock_path(run_dir)
    created_parent = not path.parent.exists()
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            handle = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the runs folder was removed in between: make it again
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(handle, 32).decode("ascii", "replace").strip() or "another process"
            os.close(handle)
            raise LenetError(f"{run_dir} is being trained by process {holder}: wait for it to finish, stop it, "
                             "or choose another --run-name.") from None
        # The holder before us may have removed the file while we opened it: then our lock guards nothing.
        if os.path.exists(path) and os.stat(path).st_ino == os.fstat(handle).st_ino:
            break
        os.close(handle)
    try:
        os.ftruncate(handle, 0)
        os.write(handle, f"{os.getpid()}\n".encode("ascii"))
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(handle)
        if created_parent:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # a runs folder made only for a run that failed to start, left empty


def default_checkpoint(runs_dir: str | os.PathLike = RUNS_DIR) -> Path:
    """best.pt of the newest completed run directly under `runs_dir` (never one under runs/notebooks/)."""
    runs_dir = checked_path(runs_dir, "--runs-dir")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LenetError(f"--runs-dir {runs_dir} is a file, not a folder: pass the folder that holds the runs.")
    completed = []
    try:
        folders = list(runs_dir.iterdir()) if runs_dir.is_dir() else []
    except OSError as error:
        raise LenetError(explain_os_error(runs_dir, error, "runs folder")) from None
    for run in folders:
        best, metrics = checkpoint_path(run, BEST), run / METRICS
        try:
            if run.name != NOTEBOOK_RUNS and best.is_file() and metrics.is_file():
                completed.append((metrics.stat().st_mtime, run.name, best))
        except OSError:  # a run folder this user may not read is not a model it can use
            continue
    if not completed:
        raise LenetError(f"no completed training run in {runs_dir.as_posix().rstrip('/')}/: train one with "
                         "`make train` (or lenet-train), or pass --checkpoint.")
    return max(completed)[2]
