"""Training: `train_one_epoch`, `evaluate`, `fit`, and the `lenet-train` command.

`fit(config)` trains LeNet-5, logs to TensorBoard, checkpoints every epoch, stops early when the
validation loss turns up, restores the best checkpoint, calibrates its confidence on the validation
split, reports its test accuracy, and writes `config.json` and `metrics.json` into `runs/<run_name>/`.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lenet.calibration import expected_calibration_error, fit_temperature
from lenet.callbacks import Callback, CheckpointSaver, EarlyStopping, RunState, TensorBoardLogger
from lenet.checkpoint import load_checkpoint, restore, save_checkpoint
from lenet.cli import print_error, run_command
from lenet.config import Config, build_parser, config_from_args, flag, typed_fields
from lenet.data import Augmentation, Splits, TensorBatches, load_splits
from lenet.errors import LenetError
from lenet.files import write_json
from lenet.lr_finder import RangeTest, lr_range_test
from lenet.model import LeNet5

# What may change when a run is continued: the rest would make it a different run.
RESUMABLE = ("epochs", "data_dir", "device", "patience")


class Interrupted(KeyboardInterrupt):
    """Ctrl+C during `fit`, knowing the run folder and whether a checkpoint was written."""

    def __init__(self, run_dir: Path, epochs_saved: int) -> None:
        super().__init__()
        self.run_dir, self.epochs_saved = run_dir, epochs_saved


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is unavailable is an error."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available.get(name, False):
        raise LenetError(f"--device {name} is not available on this machine: use --device auto or cpu.")
    return torch.device(name)


def build_optimizer(config: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Adam, or SGD with momentum, as the config says."""
    device_type = next(model.parameters()).device.type
    # The fused kernels update all parameters in one call instead of a dozen small ops per tensor.
    fused = True if device_type in ("cpu", "cuda") else None
    if config.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=fused)
    return torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                           weight_decay=config.weight_decay, fused=fused)


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int):
    """None for a constant rate; OneCycleLR (Smith 2018) over `epochs`, stepped every batch, peaking at config.lr."""
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=epochs,
                                               steps_per_epoch=steps_per_epoch)


def train_one_epoch(model: torch.nn.Module, batches: TensorBatches, optimizer: torch.optim.Optimizer,
                    scheduler=None, on_step=None, description: str = "train") -> tuple[float, float]:
    """One pass over `batches`; returns (mean loss, accuracy). `on_step(loss)` runs after every step."""
    model.train()
    # Sums stay on the device: calling .item() every step would force a sync each time.
    loss_sum = torch.zeros((), device=batches.labels.device)
    correct = torch.zeros((), device=batches.labels.device, dtype=torch.long)
    for images, labels in tqdm(batches, desc=description, leave=False, disable=None, file=sys.stderr):
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        loss_sum += loss.detach() * len(labels)
        correct += (logits.argmax(1) == labels).sum()
        if on_step is not None:
            on_step(loss.detach())
    n = len(batches.labels)
    return loss_sum.item() / n, correct.item() / n


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batches: TensorBatches) -> torch.Tensor:
    """(N, classes) logits of `model` for every image of `batches`, in order."""
    model.eval()
    return torch.cat([model(images) for images, _ in batches])


@torch.inference_mode()
def evaluate(model: torch.nn.Module, batches: TensorBatches) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `batches`, without gradients."""
    model.eval()
    loss_sum, correct = 0.0, 0
    for images, labels in batches:
        logits = model(images)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
    return loss_sum / len(batches.labels), correct / len(batches.labels)


def prepare_run_dir(config: Config) -> Path:
    """runs/<run_name>/, new. An existing run is an error unless --overwrite; a run that never saved a
    checkpoint (it failed or was stopped in its first epoch) is simply reused."""
    runs_dir = Path(config.runs_dir)
    if runs_dir.exists() and not runs_dir.is_dir():
        raise LenetError(f"--runs-dir {runs_dir} is a file, not a folder: pass a folder (it is created if missing).")
    name = config.run_name or f"{config.dataset}-{config.optimizer}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = runs_dir / name
    if run_dir.is_symlink() or (run_dir.exists() and not run_dir.is_dir()):
        raise LenetError(f"{run_dir} exists and is not a run folder: choose another --run-name.")
    if run_dir.is_dir() and any(run_dir.iterdir()):
        is_run = (run_dir / "config.json").is_file()
        started = any((run_dir / "checkpoints").glob("*.pt"))
        if not is_run:
            raise LenetError(f"{run_dir} already exists and is not a lenet run (it has no config.json): "
                             "choose another --run-name; --overwrite never deletes it.")
        if started and not config.overwrite:
            raise LenetError(f"{run_dir} already exists: choose another --run-name, continue it with "
                             f"--resume {run_dir}, or replace it with --overwrite.")
        shutil.rmtree(run_dir)  # a lenet run: replaced as asked, or one that never saved a checkpoint
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def prepare(config: Config) -> tuple[torch.device, Splits, LeNet5, torch.optim.Optimizer]:
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


def find_lr(config: Config, steps: int = 300) -> RangeTest:
    """Smith's range test for this config's optimizer and batch size, on a fresh model."""
    _, splits, model, optimizer = prepare(config)
    return lr_range_test(model, optimizer, splits.train, steps=steps)


def resume_config(saved: Config, changes: Mapping[str, Any]) -> Config:
    """The saved config with the changes a continued run allows (RESUMABLE); LenetError naming any other."""
    refused = [flag(name) for name, value in changes.items() if name not in RESUMABLE and value != getattr(saved, name)]
    if refused:
        raise LenetError(f"{', '.join(refused)} cannot change when a run is continued (only "
                         f"{', '.join(flag(name) for name in RESUMABLE)} can): drop them, or start a new run.")
    return dataclasses.replace(saved, **changes)


def start_run(config: Config | None, resume: str | Path | None, changes: Mapping[str, Any]) -> RunState:
    """A new run (data loaded before its folder is made), or a run continued from its checkpoint."""
    if resume is None:
        device, splits, model, optimizer = prepare(config)
        run_dir = prepare_run_dir(config)
        write_json(run_dir / "config.json", config.to_dict())
        scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs)
        return RunState(config, model, optimizer, scheduler, splits, run_dir, device)
    resume = Path(resume)
    path = resume if resume.suffix == ".pt" else resume / "checkpoints" / "last.pt"
    run_dir = path.parent.parent
    if not path.exists() and resume.is_dir():
        raise LenetError(f"{run_dir} has no checkpoint to continue from (it stopped before its first epoch "
                         "ended): start it again without --resume.")
    saved = load_checkpoint(path)
    config = resume_config(Config.from_dict(saved["config"]), changes)
    device, splits, model, optimizer = prepare(config)
    schedule_start = saved.get("schedule_start", 0)
    if config.epochs > saved["config"]["epochs"] and config.schedule == "onecycle":
        schedule_start = saved["epoch"]  # an extended run gets a new cycle over the epochs it adds
    scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs - schedule_start)
    restore(saved if schedule_start == saved.get("schedule_start", 0) else {**saved, "scheduler": None},
            model, optimizer, scheduler)
    write_json(run_dir / "config.json", config.to_dict())
    return RunState(config, model, optimizer, scheduler, splits, run_dir, device, epoch=saved["epoch"],
                    step=saved["epoch"] * len(splits.train), schedule_start=schedule_start,
                    history=saved["history"], extended=config.epochs > saved["config"]["epochs"])


def replay_early_stopping(state: RunState) -> EarlyStopping:
    """The early-stopping judge as the run's history left it; best.pt re-pointed if the run went back."""
    stopper = EarlyStopping(state.config.patience)
    stopped = any([stopper.step(record["val_loss"], record["epoch"]) for record in state.history])
    if stopped and state.extended:
        stopper.bad_epochs = 0  # asked for more epochs: patience counts again from here
    elif state.history and (stopped or state.epoch >= state.config.epochs):
        raise LenetError(f"{state.run_dir} has already finished at epoch {state.epoch}: extend it with a larger "
                         f"--epochs, or start a new run.")
    folder = state.run_dir / "checkpoints"
    if state.history and load_checkpoint(folder / "best.pt")["epoch"] != stopper.best_epoch:
        save_checkpoint(load_checkpoint(folder / f"epoch_{stopper.best_epoch:02d}.pt"), folder / "best.pt")
    return stopper


def fit(config: Config | None = None, resume: str | Path | None = None, changes: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (), verbose: bool = True) -> dict[str, Any]:
    """Train as `config` says, or continue the run folder (or checkpoint) `resume` with the allowed `changes`;
    returns the contents of metrics.json."""
    state = start_run(config, resume, changes or {})
    config, splits = state.config, state.splits
    stopper = replay_early_stopping(state)
    callbacks = [TensorBoardLogger(), CheckpointSaver(), *callbacks]
    for callback in callbacks:
        callback.on_train_start(state)
    try:
        for epoch in range(state.epoch + 1, config.epochs + 1):
            state.epoch = splits.train.epoch = epoch
            record = run_epoch(state, callbacks)
            state.history.append(record)
            stop = stopper.step(record["val_loss"], epoch)
            state.improved = stopper.best_epoch == epoch
            for callback in callbacks:
                callback.on_epoch_end(state)
            if verbose:
                print(describe_epoch(record, config.epochs, state.improved), flush=True)
            if stop:
                if verbose:
                    print(f"early stop: val loss has not improved for {config.patience} epochs", flush=True)
                break
    except KeyboardInterrupt:
        for callback in callbacks:
            callback.on_interrupt(state)
        raise Interrupted(state.run_dir, len(state.history)) from None
    state.result = finish(state)
    for callback in callbacks:
        callback.on_train_end(state)
    if verbose:
        result = state.result
        print(f"best epoch {result['best_epoch']}: test accuracy {result['test_accuracy']:.2%} (test loss "
              f"{result['test_loss']:.4f}); run saved in {state.run_dir}", flush=True)
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
                                                 on_step, description=f"epoch {state.epoch}/{config.epochs}")
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


def describe_epoch(record: dict[str, float], epochs: int, improved: bool) -> str:
    """One line per epoch: losses, accuracies and seconds."""
    return (f"epoch {record['epoch']:2d}  train loss {record['train_loss']:.4f} acc {record['train_accuracy']:.2%}  "
            f"val loss {record['val_loss']:.4f} acc {record['val_accuracy']:.2%}  {record['seconds']:.1f}s"
            + ("  *best" if improved else ""))


def finish(state: RunState) -> dict[str, Any]:
    """Reload best.pt (the checkpoint early stopping chose), calibrate it on validation, test it, write metrics."""
    path = state.run_dir / "checkpoints" / "best.pt"
    best = load_checkpoint(path, map_location=state.device)
    state.model.load_state_dict(best["model"])
    splits = state.splits
    temperature = fit_temperature(predict_logits(state.model, splits.val), splits.val.labels)
    save_checkpoint({**best, "temperature": temperature}, path)
    test_loss, test_accuracy = evaluate(state.model, splits.test)
    test_logits, test_labels = predict_logits(state.model, splits.test).float().cpu(), splits.test.labels.cpu()
    result = {"run_dir": str(state.run_dir), "history": state.history, "best_epoch": best["epoch"],
              "best_val_loss": best["metrics"]["val_loss"], "test_loss": test_loss, "test_accuracy": test_accuracy,
              "stopped_early": state.epoch < state.config.epochs, "temperature": temperature,
              "test_ece": {"before": expected_calibration_error(test_logits.softmax(1), test_labels),
                           "after": expected_calibration_error((test_logits / temperature).softmax(1), test_labels)},
              "normalization": {"mean": splits.mean, "std": splits.std}, "device": str(state.device)}
    write_json(state.run_dir / "metrics.json", result)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-train` / `python -m lenet.train`."""
    parser = build_parser("lenet-train", description="Train LeNet-5 on MNIST.")
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="continue a run folder from its last.pt (or from a checkpoint file of it, such as "
                             f"checkpoints/epoch_03.pt); only {', '.join(flag(n) for n in RESUMABLE)} may be "
                             "given with it (default: off)")
    parser.add_argument("--find-lr", action="store_true",
                        help="run the learning-rate range test for this config instead of training (default: off)")
    args = parser.parse_args(argv)
    if args.resume is not None and args.preset != "default":
        parser.error("--preset cannot be given with --resume: a continued run keeps its own settings.")
    config = config_from_args(args, parser) if args.resume is None else None

    def body() -> int:
        if args.find_lr:
            result = find_lr(config or Config())
            print(f"{(config or Config()).optimizer}, batch {(config or Config()).batch_size}: loss lowest at lr "
                  f"{result.suggested_lr * 10:.2g}{' before diverging' if result.diverged else ''}; "
                  f"suggested maximum lr {result.suggested_lr:.2g} (for --schedule onecycle --lr)")
            return 0
        fit(config, resume=args.resume, changes=typed_fields(args) if args.resume else None)
        return 0

    try:
        return run_command(body)
    except Interrupted as interrupted:
        if interrupted.epochs_saved == 0 and args.resume is None:
            shutil.rmtree(interrupted.run_dir, ignore_errors=True)  # nothing in it worth keeping
            print_error("interrupted before the first checkpoint, so nothing was saved: run the same command "
                        "again to start over.")
        else:
            print_error(f"interrupted: epochs 1-{interrupted.epochs_saved} are saved; continue with "
                        f"--resume {interrupted.run_dir}")
        return 130
    except KeyboardInterrupt:
        print_error("interrupted before training began, so nothing was saved.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
