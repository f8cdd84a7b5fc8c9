"""Small objects that `fit` calls: TensorBoard logging, per-epoch checkpoints, progress lines, and early stopping.

A callback overrides any of `on_train_start`, `on_step`, `on_epoch_end`, `on_train_end` and `on_interrupt`;
each receives the loop's `RunState`. Early stopping is not a callback but a one-question object,
"stop now?", that `fit` asks after every epoch.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lenet import runs
from lenet.checkpoint import build_checkpoint, save_checkpoint
from lenet.config import Config
from lenet.data import Splits
from lenet.errors import LenetError


@dataclass
class RunState:
    """What the training loop knows, handed to every callback."""

    config: Config
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    splits: Splits
    run_dir: Path
    device: torch.device
    epoch: int = 0
    step: int = 0
    schedule_start: int = 0  # the epoch the learning-rate schedule began at (later when a run is extended)
    extended: bool = False  # a continued run given more epochs than it was started with
    history: list[dict[str, float]] = field(default_factory=list)
    improved: bool = False  # whether this epoch's val loss is the best so far
    stopping: bool = False  # whether early stopping ends the run after this epoch
    result: dict[str, Any] = field(default_factory=dict)  # filled at the end: test metrics, best epoch

    def checkpoint(self) -> dict[str, Any]:
        """This moment of the run in the one checkpoint format."""
        return build_checkpoint(model=self.model, optimizer=self.optimizer, scheduler=self.scheduler,
                                schedule_start=self.schedule_start, config=self.config, epoch=self.epoch,
                                history=self.history, mean=self.splits.mean, std=self.splits.std,
                                classes=self.splits.classes)


class Callback:
    """Base class: every hook does nothing until overridden."""

    def on_train_start(self, state: RunState) -> None: ...
    def on_step(self, state: RunState, loss: torch.Tensor) -> None: ...
    def on_epoch_end(self, state: RunState) -> None: ...
    def on_train_end(self, state: RunState) -> None: ...
    def on_interrupt(self, state: RunState) -> None: ...


class EarlyStopping:
    """Answers "stop now?" after each epoch: yes once val loss has not improved for `patience` epochs."""

    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_epoch, self.bad_epochs = math.inf, 0, 0

    def step(self, val_loss: float, epoch: int) -> bool:
        """Record this epoch's val loss; True when training should stop. patience 0 never stops."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        return self.patience > 0 and self.bad_epochs >= self.patience

    @classmethod
    def replay(cls, patience: int, history: list[dict[str, float]], epochs: int,
               extended: bool = False) -> "EarlyStopping":
        """The judge as a continued run's past epochs left it; LenetError if the run has nothing left to do."""
        stopper = cls(patience)
        stopped = any([stopper.step(record["val_loss"], record["epoch"]) for record in history])
        if stopped and extended:
            stopper.bad_epochs = 0  # asked for more epochs: patience counts again from here
        elif history and (stopped or history[-1]["epoch"] >= epochs):
            raise LenetError(f"the run has already finished at epoch {history[-1]['epoch']}: extend it with a "
                             "larger --epochs, or start a new run.")
        return stopper


class CheckpointSaver(Callback):
    """Writes checkpoints/epoch_NN.pt every epoch, best.pt on a new lowest val loss, and last.pt."""

    def on_epoch_end(self, state: RunState) -> None:
        checkpoint = state.checkpoint()
        save_checkpoint(checkpoint, runs.checkpoint_path(state.run_dir, state.epoch))
        if state.improved:
            save_checkpoint(checkpoint, runs.checkpoint_path(state.run_dir, runs.BEST))
        # last.pt is written last: a resume never finds it ahead of best.pt.
        save_checkpoint(checkpoint, runs.checkpoint_path(state.run_dir, runs.LAST))


class PrintProgress(Callback):
    """One line per epoch (losses, accuracies, seconds), why the run stopped early, and the result."""

    def on_epoch_end(self, state: RunState) -> None:
        record = state.history[-1]
        print(f"epoch {record['epoch']:2d}  train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.2%}  "
              f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.2%}  {record['seconds']:.1f}s"
              + ("  *best" if state.improved else ""), flush=True)
        if state.stopping:
            print(f"early stop: val loss has not improved for {state.config.patience} epochs", flush=True)

    def on_train_end(self, state: RunState) -> None:
        result = state.result
        print(f"best epoch {result['best_epoch']}: test accuracy {result['test_accuracy']:.2%} (test loss "
              f"{result['test_loss']:.4f}); run saved in {state.run_dir}", flush=True)


class TensorBoardLogger(Callback):
    """Scalars, weight and gradient histograms, an input grid, the graph and hparams, in the run folder."""

    def __init__(self) -> None:
        self.writer = None

    def on_train_start(self, state: RunState) -> None:
        # Imported here: TensorBoard and torchvision take seconds to import, and only training needs them.
        import torchvision
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(state.run_dir))
        if state.epoch == 0:  # a resumed run logged these already
            images = state.splits.train.images[:64]
            grid = torchvision.utils.make_grid(images * state.splits.std + state.splits.mean, nrow=8)
            self.writer.add_image("inputs", grid.clamp(0, 1), 0)
            with warnings.catch_warnings():  # add_graph traces with torch.jit, which warns it is deprecated
                warnings.simplefilter("ignore", FutureWarning)
                self.writer.add_graph(state.model, images[:1].to(state.device))

    def on_step(self, state: RunState, loss: torch.Tensor) -> None:
        if state.step % state.config.log_every == 0:
            self.writer.add_scalar("loss/train_step", loss.item(), state.step)

    def on_epoch_end(self, state: RunState) -> None:
        record, epoch = state.history[-1], state.epoch
        for split in ("train", "val"):
            self.writer.add_scalar(f"loss/{split}", record[f"{split}_loss"], epoch)
            self.writer.add_scalar(f"accuracy/{split}", record[f"{split}_accuracy"], epoch)
        self.writer.add_scalar("learning_rate", record["lr"], epoch)
        for name, parameter in state.model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", parameter.detach().cpu(), epoch)
            if parameter.grad is not None:
                self.writer.add_histogram(f"gradients/{name}", parameter.grad.detach().cpu(), epoch)
        self.writer.flush()

    def on_interrupt(self, state: RunState) -> None:
        if self.writer is not None:  # closed now: a writer left open would write into the folder at exit
            self.writer.close()

    def on_train_end(self, state: RunState) -> None:
        hparams = {k: v for k, v in state.config.to_dict().items()
                   if isinstance(v, (int, float, str, bool)) and k not in ("runs_dir", "log_every", "overwrite")}
        metrics = {"hparam/test_accuracy": state.result["test_accuracy"],
                   "hparam/best_val_loss": state.result["best_val_loss"]}
        self.writer.add_hparams(hparams, metrics, run_name=".")
        self.writer.close()
