"""Training LeNet-5: the loop (`train_one_epoch`, `evaluate`) and `fit`, which runs it epoch after epoch.

`fit(config)` trains LeNet-5 into its run folder (see `lenet.runs`): the callbacks log to TensorBoard and
save a checkpoint every epoch, early stopping ends the run when the validation loss turns up, then the
best epoch is calibrated on the validation split and tested once. The command line is `lenet.cli.train`.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lenet import runs
from lenet.calibration import expected_calibration_error, fit_temperature
from lenet.callbacks import Callback, CheckpointSaver, EarlyStopping, PrintProgress, RunState, TensorBoardLogger
from lenet.checkpoint import load_checkpoint, restore, save_checkpoint
from lenet.config import Config
from lenet.data import Augmentation, Splits, TensorBatches, load_splits, resolve_device
from lenet.errors import LenetError
from lenet.files import write_json
from lenet.model import LeNet5
from lenet.outliers import Scribbles, evidence, familiar_features, image_familiarity, refusal_thresholds, uniform_loss


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
                    outliers: Scribbles | None = None) -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, accuracy). `on_step(loss)` runs after every step.

    With `outliers`, each batch of digits goes through the network with a batch of scribbles, and the loss adds
    `outliers.weight` times their `uniform_loss`: the network learns to be unsure of what is not a digit. The loss
    reported (returned, and given to `on_step`) is the digits' cross-entropy alone, comparable with validation's."""
    model.train()
    # Sums stay on the device: calling .item() every step would force a sync each time.
    loss_sum = torch.zeros((), device=batches.labels.device)
    correct = torch.zeros((), device=batches.labels.device, dtype=torch.long)
    others = iter(outliers) if outliers is not None and outliers.per_batch else None
    for images, labels in tqdm(batches, desc=description, leave=False, disable=None, file=sys.stderr):
        if others is None:
            logits = model(images)
            loss = digit_loss = F.cross_entropy(logits, labels)
        else:
            both = model(torch.cat([images, next(others)]))
            logits = both[:len(labels)]
            digit_loss = F.cross_entropy(logits, labels)
            loss = digit_loss + outliers.weight * uniform_loss(both[len(labels):])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += digit_loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        if on_step is not None:
            on_step(digit_loss.detach())
    n = len(batches.labels)
    return loss_sum.item() / n, correct.item() / n


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batches: TensorBatches) -> torch.Tensor:
    """(N, classes) logits of `model` for every image of `batches`, in order."""
    model.eval()
    return torch.cat([model(images) for images, _ in batches])


def evaluate(model: torch.nn.Module, batches: TensorBatches) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `batches`, without gradients."""
    return loss_and_accuracy(predict_logits(model, batches), batches.labels)


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and the share of argmax predictions that match `labels`."""
    return F.cross_entropy(logits.float(), labels).item(), (logits.argmax(1) == labels).sum().item() / len(labels)


def prepare(config: Config) -> tuple[torch.device, Splits, LeNet5, torch.optim.Optimizer]:
    """Seed, pick the device, load the data onto it, and build the model and optimizer (see `scribbles_for`)."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    augmentation = Augmentation(config.max_shift, config.rotate, config.scale, config.shear, config.thicken,
                                config.thin)
    splits = load_splits(config.dataset, config.data_dir, config.val_size, config.batch_size, seed=config.seed,
                         augmentation=augmentation).to(device, memory_format)
    model = LeNet5(num_classes=len(splits.classes)).to(device, memory_format=memory_format)
    return device, splits, model, build_optimizer(config, model)


def scribbles_for(config: Config, splits: Splits) -> Scribbles | None:
    """The scribbles `config` shows beside each training batch, on the data's device; None for none."""
    if not config.scribbles:
        return None
    images = splits.train.images
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    return Scribbles.drawn(config.scribbles, config.outlier_weight, splits.mean, splits.std, config.seed,
                           splits.train.augmentation, images.device, memory_format)


def start_run(config: Config | None, resume: str | Path | None, changes: Mapping[str, Any], run_dir: Path) -> RunState:
    """A new run in `run_dir` (data loaded before the folder is made), or a run continued from its checkpoint."""
    if resume is None:
        device, splits, model, optimizer = prepare(config)
        runs.make_run_dir(run_dir, config.overwrite)
        write_json(run_dir / runs.CONFIG, config.to_dict())
        scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs)
        return RunState(config, model, optimizer, scheduler, splits, run_dir, device,
                        outliers=scribbles_for(config, splits))
    saved = load_checkpoint(runs.resume_point(resume)[0])
    config = Config.from_dict(saved["config"]).resumed(dict(changes))
    device, splits, model, optimizer = prepare(config)
    schedule_start = saved.get("schedule_start", 0)
    if config.epochs > saved["config"]["epochs"] and config.schedule == "onecycle":
        schedule_start = saved["epoch"]  # an extended run gets a new cycle over the epochs it adds
    scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs - schedule_start)
    restore(saved if schedule_start == saved.get("schedule_start", 0) else {**saved, "scheduler": None},
            model, optimizer, scheduler)
    write_json(run_dir / runs.CONFIG, config.to_dict())
    return RunState(config, model, optimizer, scheduler, splits, run_dir, device, scribbles_for(config, splits),
                    epoch=saved["epoch"],
                    step=saved["epoch"] * len(splits.train), schedule_start=schedule_start,
                    history=saved["history"], extended=config.epochs > saved["config"]["epochs"])


def fit(config: Config | None = None, resume: str | Path | None = None, changes: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (), verbose: bool = True) -> dict[str, Any]:
    """Train as `config` says, or continue the run folder (or checkpoint) `resume`; returns metrics.json's contents."""
    run_dir = runs.new_run_dir(config) if resume is None else runs.resume_point(resume)[1]
    with runs.claim(run_dir):  # one process per run folder
        state = start_run(config, resume, changes or {}, run_dir)
        config, splits = state.config, state.splits
        stopper = EarlyStopping.replay(config.patience, state.history, config.epochs, state.extended)
        if state.history:  # continued from an earlier epoch: best.pt must be one of the epochs kept
            runs.point_best_at(run_dir, stopper.best_epoch)
        callbacks = [TensorBoardLogger(), CheckpointSaver(), *([PrintProgress()] if verbose else []), *callbacks]
        for callback in callbacks:
            callback.on_train_start(state)
        try:
            for epoch in range(state.epoch + 1, config.epochs + 1):
                state.epoch = splits.train.epoch = epoch
                if state.outliers is not None:
                    state.outliers.epoch = epoch
                record = run_epoch(state, callbacks)
                state.history.append(record)
                state.stopping = stopper.step(record["val_loss"], epoch)
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
        temperature, refuse_below, evidence_below = calibrate_best_checkpoint(state)
        state.result = test_best(state, temperature, refuse_below, evidence_below)
        write_json(run_dir / runs.METRICS, state.result)
        for callback in callbacks:
            callback.on_train_end(state)
    return state.result


def run_epoch(state: RunState, callbacks: Sequence[Callback]) -> dict[str, float]:
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
                                                 on_step, description=f"epoch {state.epoch}/{config.epochs}",
                                                 outliers=state.outliers)
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


def calibrate_best_checkpoint(state: RunState) -> tuple[float, float, float]:
    """Load best.pt (early stopping's choice) into the model and fit, on validation, its temperature and the
    familiarity and evidence under which an image is "not a digit" (the familiarity against the features of FAMILIAR
    training digits; `lenet.outliers`); store them with those features in best.pt and return the temperature and
    the two thresholds."""
    path = runs.checkpoint_path(state.run_dir, runs.BEST)
    best = load_checkpoint(path, map_location=state.device)
    state.model.load_state_dict(best["model"])
    logits = predict_logits(state.model, state.splits.val)
    temperature = fit_temperature(logits, state.splits.val.labels)
    familiar = familiar_features(state.model, state.splits.train.images, seed=state.config.seed)
    refuse_below, evidence_below = refusal_thresholds(
        image_familiarity(state.model, state.splits.val.images, familiar), evidence(logits.detach(), temperature))
    save_checkpoint({**best, "temperature": temperature, "familiar": familiar, "refuse_below": refuse_below,
                     "evidence_below": evidence_below}, path)
    return temperature, refuse_below, evidence_below


def test_best(state: RunState, temperature: float, refuse_below: float | None = None,
              evidence_below: float | None = None) -> dict[str, Any]:
    """The run's result (metrics.json): the best epoch's test loss, accuracy and calibration, one pass over test."""
    splits, best = state.splits, min(state.history, key=lambda record: record["val_loss"])
    logits, labels = predict_logits(state.model, splits.test).float().cpu(), splits.test.labels.cpu()
    test_loss, test_accuracy = loss_and_accuracy(logits, labels)
    return {"run_dir": str(state.run_dir), "history": state.history, "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "test_loss": test_loss, "test_accuracy": test_accuracy,
            "stopped_early": state.epoch < state.config.epochs, "temperature": temperature,
            "refuse_below": refuse_below, "evidence_below": evidence_below,
            "test_ece": {"before": expected_calibration_error(logits.softmax(1), labels),
                         "after": expected_calibration_error((logits / temperature).softmax(1), labels)},
            "normalization": {"mean": splits.mean, "std": splits.std}, "device": str(state.device)}
