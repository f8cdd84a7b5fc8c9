"""What the notebooks share: their settings (quick or full mode, where the data and their runs live, the
machine they run on), a config without augmentation, a smaller training set for `fit`, the bookkeeping of
experiments repeated over seeds (per-epoch arrays, the first epoch that reaches a target, a summary table), the
confusion matrix, and the package's own source shown with its line numbers.

The notebooks call `lenet.train.fit` themselves and hand its results to these functions. A result is what
`fit` returns (the contents of metrics.json): a dict with `history`, one record per epoch, and
`test_accuracy`. The one thing here that trains is `train_briefly`, the exercises' run of a few hundred
steps: seconds, no run folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from lenet.callbacks import Callback, RunState
from lenet.config import Config
from lenet.errors import LenetError
from lenet.runs import NOTEBOOK_RUNS, RUNS_DIR

QUICK_VARIABLE = "LENET_QUICK"  # LENET_QUICK=1 shrinks the training in every notebook (CI, nbval)


@dataclass(frozen=True)
class NotebookSettings:
    """How much a notebook trains, where it reads the data and writes its runs, and on what machine."""

    quick: bool  # LENET_QUICK=1: fewer epochs and seeds, so that CI can run the notebook in minutes
    data_dir: str  # $LENET_DATA_DIR, else <repository>/data
    runs_dir: str  # <repository>/runs/notebooks: never picked as the default model by the commands
    default_runs_dir: str  # <repository>/runs: where `make train` puts the model the commands use
    machine: str  # what the timings in the notebook were measured on, thread count included


def notebook_settings(root: str | os.PathLike = "..") -> NotebookSettings:
    """Read LENET_QUICK and LENET_DATA_DIR and print the mode, the folders and the machine.

    `root` is the repository, seen from where the notebook runs (Jupyter runs a notebook in its own
    folder, notebooks/).
    """
    root = Path(root)
    settings = NotebookSettings(
        quick=os.environ.get(QUICK_VARIABLE) == "1",
        data_dir=os.environ.get("LENET_DATA_DIR") or str(root / "data"),
        runs_dir=str(root / RUNS_DIR / NOTEBOOK_RUNS),
        default_runs_dir=str(root / RUNS_DIR),
        machine=machine_description(),
    )
    mode = f"quick mode ({QUICK_VARIABLE}=1)" if settings.quick else "full mode"
    print(f"{mode}; data from {shown_data_dir(settings.data_dir, root)}; runs written to {settings.runs_dir}\n"
          f"machine: {settings.machine}")
    return settings


def shown_data_dir(data_dir: str | os.PathLike, root: str | os.PathLike = "..") -> str:
    """The data folder as a notebook prints it, never as an absolute path (that would name one machine's folders).

    A folder inside the repository `root` is shown relative to the working directory, as the runs folder is
    (../data); one outside it is shown as $LENET_DATA_DIR when that is where it came from, else by its name.
    """
    data_dir, root = Path(data_dir), Path(root).resolve()
    if not data_dir.is_absolute():
        return str(data_dir)
    if data_dir.resolve().is_relative_to(root):
        return os.path.relpath(data_dir.resolve())
    if os.environ.get("LENET_DATA_DIR") and Path(os.environ["LENET_DATA_DIR"]) == data_dir:
        return "$LENET_DATA_DIR"
    return f".../{data_dir.name}"


def machine_description() -> str:
    """The processor, CPU count, torch's thread count, torch version, GPU and current load, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        cpu = f"{names[0]} ({platform.machine()})" if names else cpu
    except OSError:  # not Linux
        pass
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    gpu = f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    # The load says whether other work shared the CPUs while the timings were taken.
    load = f", load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    return (f"{cpu}, {cpus} CPUs, {threads} torch thread{'s' if threads != 1 else ''}, "
            f"torch {torch.__version__.split('+')[0]}, {gpu}{load}")


def without_augmentation(config: Config) -> Config:
    """`config` trained on the digits as they are: every training augmentation (the fields whose help starts with
    "augment") switched off, and no drawn non-digits beside them (`scribbles`)."""
    off = {field.name: type(getattr(config, field.name))(0) for field in dataclasses.fields(config)
           if field.metadata.get("help", "").startswith("augment")}
    return dataclasses.replace(config, scribbles=0, **off)


class SmallerTrainingSet(Callback):
    """Makes `fit` train on only the first `images` images of its training split; validation and test stay whole.

    Few images and many epochs make a model overfit clearly (notebook 05). The run's config.json does not record
    the cut, so name the run after it.
    """

    def __init__(self, images: int) -> None:
        self.images = images

    def on_train_start(self, state: RunState) -> None:
        train = state.splits.train
        if not 0 < self.images <= len(train.labels):
            raise LenetError(f"SmallerTrainingSet needs between 1 and {len(train.labels):,} images (the training "
                             f"split), got {self.images:,}.")
        # fit reads state.splits.train every epoch, so the cut holds for the whole run.
        state.splits.train = dataclasses.replace(train, images=train.images[:self.images],
                                                 labels=train.labels[:self.images])


def per_epoch(results: Sequence[Mapping[str, Any]], key: str) -> np.ndarray:
    """(runs, epochs) array of one history field, e.g. per_epoch(results, "val_accuracy")."""
    return np.array([[record[key] for record in result["history"]] for result in results], dtype=float)


def first_epoch_reaching(accuracies: Sequence[float], target: float) -> int | None:
    """The first epoch (1-based) whose accuracy is at least `target`, or None if none is."""
    # 1e-9: an accuracy is a ratio of counts, so 0.99 can come out as 0.98999999999.
    hits = np.flatnonzero(np.asarray(accuracies, dtype=float) >= target - 1e-9)
    return int(hits[0]) + 1 if len(hits) else None


def target_name(target: float) -> str:
    """0.98 -> '98%', 0.985 -> '98.5%'."""
    return f"{target * 100:g}%"


def summarize(results: Sequence[Mapping[str, Any]], targets: Sequence[float] = (0.98, 0.99)) -> dict[str, Any]:
    """One row of numbers for runs that differ only in their seed (same epochs each).

    Accuracies are validation accuracies unless the key says test; "seconds" add up the training time of
    the epochs until a target was reached (evaluation excluded) and are averaged over the seeds that got
    there; "val accuracy drops" counts epochs, over all seeds, whose validation accuracy fell.
    """
    accuracy, seconds = per_epoch(results, "val_accuracy"), per_epoch(results, "seconds")
    test = np.array([result["test_accuracy"] for result in results])
    row = {"seeds": len(results), "epochs": accuracy.shape[1],
           "epoch 1 val": accuracy[:, 0].mean(), "final val": accuracy[:, -1].mean(),
           "final val range": (accuracy[:, -1].min(), accuracy[:, -1].max()),
           "final val loss": per_epoch(results, "val_loss")[:, -1].mean(),
           "val accuracy drops": int((np.diff(accuracy, axis=1) < 0).sum()),
           "test": test.mean(), "test range": (test.min(), test.max()), "seconds/epoch": seconds.mean()}
    for target in targets:
        reached = [first_epoch_reaching(run, target) for run in accuracy]
        hits = [(run, epoch) for run, epoch in enumerate(reached) if epoch is not None]
        name = target_name(target)
        row[f"epochs to {name}"] = np.mean([epoch for _, epoch in hits]) if hits else None
        row[f"seconds to {name}"] = np.mean([seconds[run, :epoch].sum() for run, epoch in hits]) if hits else None
        row[f"seeds at {name}"] = f"{len(hits)} of {len(reached)}"
    return row


def format_value(key: str, value: Any) -> str:
    """How a summary cell is printed: accuracies as percentages, ranges as 'low-high', a dash for None."""
    if value is None:
        return "—"
    if isinstance(value, tuple):
        return "-".join(format_value(key, part) for part in value)
    if isinstance(value, str):
        return value
    if key.startswith(("epoch 1 val", "final val range", "test")) or key in ("final val",):
        return f"{value:.2%}"
    if key.endswith("loss"):
        return f"{value:.4f}"
    if key.startswith(("epochs to", "seconds")):
        return f"{value:.1f}"
    if isinstance(value, (int, np.integer)):
        return str(value)
    return f"{value:g}"


def summary_table(rows: Mapping[str, Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows (one per label, from `summarize`) printed side by side: one line per quantity, one column per label."""
    columns = list(columns or next(iter(rows.values())).keys())
    cells = {label: [format_value(key, row.get(key)) for key in columns] for label, row in rows.items()}
    key_width = max(map(len, columns))
    widths = {label: max(len(label), *map(len, column)) + 2 for label, column in cells.items()}
    lines = [" " * key_width + "".join(f"{label:>{widths[label]}}" for label in rows)]
    for index, key in enumerate(columns):
        lines.append(f"{key:<{key_width}}" + "".join(f"{cells[label][index]:>{widths[label]}}" for label in rows))
    return "\n".join(lines)


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    index = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def show_source(function: Callable, containing: Sequence[str] = ()) -> str:
    """The lines of `function` (only those containing one of `containing`, if given) with their place in its file.

    Notebooks point at the package's code this way, so the line numbers they show stay right when the code moves.
    """
    lines, first = inspect.getsourcelines(function)
    module = inspect.getmodule(function).__name__.replace(".", "/") + ".py"
    width = len(str(first + len(lines)))
    shown = [f"{module}:{number:<{width}}  {line.rstrip()}" for number, line in enumerate(lines, start=first)
             if not containing or any(word in line for word in containing)]
    return "\n".join(shown)


def train_briefly(config: Config, images: int = 25_600) -> dict[str, float]:
    """Train `config` on its first `images` training images, once, and validate: seconds instead of minutes.

    The same model, optimizer, schedule (one cycle over these steps), augmentation and loop as `fit`
    (`lenet.train.build_run` and `train_one_epoch`), without the drawn non-digits, a run folder, checkpoints or
    logs. Returns the training loss and accuracy over the pass, the validation loss and accuracy after it, and the
    steps taken.
    """
    from lenet.train import build_run, build_scheduler, evaluate, train_one_epoch

    _, splits, model, optimizer = build_run(config)
    train = dataclasses.replace(splits.train, images=splits.train.images[:images],
                                labels=splits.train.labels[:images], epoch=1)
    scheduler = build_scheduler(config, optimizer, len(train), 1)
    train_loss, train_accuracy = train_one_epoch(model, train, optimizer, scheduler)
    val_loss, val_accuracy = evaluate(model, splits.val)
    return {"train_loss": train_loss, "train_accuracy": train_accuracy, "val_loss": val_loss,
            "val_accuracy": val_accuracy, "steps": len(train)}
