"""Training LeNet-5: the loop (`train_one_epoch`) and `fit`, which runs it epoch after epoch and validates each.

`fit(config)` trains LeNet-5 into its run folder (`lenet.runs`): the callbacks log to TensorBoard and save a
checkpoint every epoch, early stopping ends the run when the validation loss turns up, then one step after training
(`lenet.evaluate.finish`) calibrates the best epoch and tests it once. The command line is `lenet.cli.train`.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lenet import runs
from lenet.callbacks import Callback, CheckpointSaver, EarlyStopping, PrintProgress, RunState, TensorBoardLogger
from lenet.checkpoint import load_checkpoint, restore
from lenet.config import Config
from lenet.data import Augmentation, Splits, TensorBatches, load_splits, resolve_device
from lenet.errors import LenetError
from lenet.evaluate import evaluate, finish
from lenet.model import LeNet5
from lenet.refusal import OutlierExposure


class ExtraBatches(Protocol):
    """An extra batch source: more images after each batch's labelled ones, and the loss of their logits."""

    def beside(self, batches: TensorBatches) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...
    def loss(self, logits: torch.Tensor) -> torch.Tensor: ...


class Interrupted(KeyboardInterrupt):
    """Ctrl+C during `fit`, knowing the run folder and how many epochs were saved."""
    def __init__(self, run_dir: Path, epochs_saved: int) -> None:
        super().__init__()
        self.run_dir, self.epochs_saved = run_dir, epochs_saved


def build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum, as the config says."""
    # The fused kernels update all parameters in one call instead of a dozen small ops per tensor.
    fused = True if next(model.parameters()).device.type in ("cpu", "cuda") else None
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, fused=fused)


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
    """None for a constant rate; OneCycleLR (Smith 2018) over `epochs`, stepped every batch, peaking at config.lr."""
    return None if config.schedule == "constant" else torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, epochs=epochs, steps_per_epoch=steps_per_epoch)


def train_one_epoch(model: torch.nn.Module, batches: TensorBatches, optimizer: torch.optim.Optimizer,
                    scheduler=None, on_step=None, description: str = "train",
                    extra: ExtraBatches | None = None) -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, accuracy). `on_step(loss)` runs after every step.

    With `extra`, each batch's images are followed by extra ones that add `extra.loss` of their logits to the loss;
    the loss reported (returned, and given to `on_step`) is the labelled images' alone, comparable with validation's."""
    model.train()
    device = next(model.parameters()).device
    # Sums stay on the device: calling .item() every step would force a sync each time.
    loss_sum, correct, seen = torch.zeros((), device=device), torch.zeros((), device=device, dtype=torch.long), 0
    for images, labels in tqdm(batches if extra is None else extra.beside(batches), total=len(batches),
                               desc=description, leave=False, disable=None, file=sys.stderr):
        logits = model(images)
        loss = F.cross_entropy(logits[:len(labels)], labels)
        total = loss if extra is None else loss + extra.loss(logits[len(labels):])
        optimizer.zero_grad(set_to_none=True)
        total.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits[:len(labels)].argmax(1) == labels).sum()
        seen += len(labels)
        if on_step is not None:
            on_step(loss.detach())
    return loss_sum.item() / seen, correct.item() / seen


def build_run(config: Config) -> tuple[torch.device, Splits, LeNet5, torch.optim.Optimizer]:
    """Seed, pick the device, load the data onto it, and build the model and optimizer."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    augmentation = Augmentation(config.max_shift, config.rotate, config.scale, config.shear, config.thicken,
                                config.thin)
    splits = load_splits(config.dataset, config.data_dir, config.val_size, config.batch_size, seed=config.seed,
                         augmentation=augmentation).to(device, memory_format)
    model = LeNet5(num_classes=len(splits.classes)).to(device, memory_format=memory_format)
    return device, splits, model, build_optimizer(config, model)


def start_run(config: Config | None, resume: str | Path | None, changes: Mapping[str, Any], run_dir: Path) -> RunState:
    """A new run in `run_dir` (data loaded before the folder is made), or a run continued from its checkpoint."""
    saved = None if resume is None else load_checkpoint(runs.resume_point(resume)[0])
    config = config if saved is None else Config.from_dict(saved["config"]).resumed(dict(changes))
    device, splits, model, optimizer = build_run(config)
    state, new_cycle = RunState(config, model, optimizer, None, splits, run_dir, device), False
    if saved is None:
        runs.make_run_dir(run_dir, config.overwrite)
    else:
        state.extended = config.epochs > saved["config"]["epochs"]
        new_cycle = state.extended and config.schedule == "onecycle"  # a new cycle over the epochs it adds
        state.schedule_start = saved["epoch"] if new_cycle else saved["schedule_start"]
        state.epoch, state.history = saved["epoch"], saved["history"]
        state.step = saved["epoch"] * len(splits.train)
    state.scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs - state.schedule_start)
    if saved is not None:
        restore(saved, model, optimizer, None if new_cycle else state.scheduler)
    runs.write_config(run_dir, config.to_dict())
    return state


def fit(config: Config | None = None, resume: str | Path | None = None, changes: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (), verbose: bool = True) -> dict[str, Any]:
    """Train as `config` says, or continue the run folder (or checkpoint) `resume`; returns metrics.json's contents."""
    run_dir = runs.resume_point(resume)[1] if resume is not None else \
        runs.new_run_dir(config.runs_dir, config.run_name, config.dataset, config.optimizer)
    with runs.claim(run_dir):  # one process per run folder
        state = start_run(config, resume, changes or {}, run_dir)
        config, splits = state.config, state.splits
        stopper = EarlyStopping.replay(config.patience, state.history, config.epochs, state.extended)
        if state.history:  # continued from an earlier epoch: best.pt must be one of the epochs kept
            runs.point_best_at(run_dir, stopper.best_epoch)
        extra = OutlierExposure.for_run(config, splits)  # drawn non-digits beside each batch (lenet.refusal)
        callbacks = [TensorBoardLogger(), CheckpointSaver(), *([PrintProgress()] if verbose else []), *callbacks]
        for callback in callbacks:
            callback.on_train_start(state)
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                state.epoch = splits.train.epoch = epoch
                state.history.append(run_epoch(state, callbacks, extra))
                state.stopping = stopper.step(state.history[-1]["val_loss"], epoch)
                state.improved = stopper.best_epoch == epoch
                for callback in callbacks:
                    callback.on_epoch_end(state)
                if state.stopping:
                    break
        except KeyboardInterrupt:
            for callback in callbacks:
                callback.on_interrupt(state)
            if not state.history and resume is None:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing in it worth keeping
            raise Interrupted(run_dir, len(state.history)) from None
        state.result = finish(state)  # calibrate best.pt, fit its refusal, test it once
        runs.write_metrics(run_dir, state.result)
        for callback in callbacks:
            callback.on_train_end(state)
    return state.result


def run_epoch(state: RunState, callbacks: Sequence[Callback], extra: ExtraBatches | None = None) -> dict[str, float]:
    """Train one epoch and validate; LenetError naming the step if the loss stops being a number."""
    config = state.config

    def on_step(loss: torch.Tensor) -> None:
        state.step += 1
        if state.step % config.log_every == 0:
            check_finite(loss.item(), state)
        for callback in callbacks:
            callback.on_step(state, loss)

    lr = state.optimizer.param_groups[0]["lr"]
    start = time.perf_counter()
    train_loss, train_accuracy = train_one_epoch(state.model, state.splits.train, state.optimizer, state.scheduler,
                                                 on_step, f"epoch {state.epoch}/{config.epochs}", extra)
    seconds = time.perf_counter() - start
    check_finite(train_loss, state)
    val_loss, val_accuracy = evaluate(state.model, state.splits.val)
    return {"epoch": state.epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
            "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": lr, "seconds": seconds}


def check_finite(loss: float, state: RunState) -> None:
    """LenetError if the training loss is NaN or infinite: the rate was too high and the weights blew up."""
    if not math.isfinite(loss):
        kept = f"checkpoints of epochs 1-{len(state.history)} are kept" if state.history else "no checkpoint was saved"
        raise LenetError(f"the training loss became {loss} by step {state.step} (epoch {state.epoch}), so training "
                         f"stopped ({kept}): the learning rate is too high; try --lr {state.config.lr / 10:.2g}.")
