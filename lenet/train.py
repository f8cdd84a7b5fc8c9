"""Training: `train_one_epoch`, `evaluate`, `fit`, and the `lenet-train` command.

`fit(config)` trains LeNet-5, logs to TensorBoard, checkpoints every epoch, stops early when the
validation loss turns up, restores the best checkpoint, reports its test accuracy, and writes
`config.json` and `metrics.json` into `runs/<run_name>/`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from tqdm import tqdm

from lenet.callbacks import Callback, CheckpointSaver, EarlyStopping, RunState, TensorBoardLogger
from lenet.checkpoint import load_checkpoint
from lenet.config import Config, build_parser, config_from_args
from lenet.data import Splits, TensorBatches, load_splits
from lenet.lr_finder import RangeTest, lr_range_test
from lenet.errors import LenetError
from lenet.model import LeNet5


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


def build_scheduler(config: Config, optimizer: torch.optim.Optimizer, steps_per_epoch: int):
    """None for a constant rate; OneCycleLR (Smith 2018) stepped every batch, peaking at config.lr."""
    if config.schedule == "constant":
        return None
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, epochs=config.epochs,
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
    """runs/<run_name>/, new; an existing run is an error unless --overwrite is given."""
    name = config.run_name or f"{config.dataset}-{config.optimizer}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir = Path(config.runs_dir) / name
    if run_dir.exists() and any(run_dir.iterdir()):
        if not config.overwrite:
            raise LenetError(f"{run_dir} already exists: continue it with --resume {run_dir}, "
                             "choose another --run-name, or pass --overwrite.")
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON via a temp file and a rename."""
    temp = path.with_suffix(".json.tmp")
    temp.write_text(json.dumps(data, indent=2) + "\n")
    temp.replace(path)


def prepare(config: Config) -> tuple[torch.device, Splits, LeNet5, torch.optim.Optimizer]:
    """Seed, pick the device, load the data onto it, and build the model and optimizer."""
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    splits = load_splits(config.dataset, config.data_dir, config.val_size, config.batch_size, seed=config.seed,
                         max_shift=config.max_shift)
    for name in ("train", "val", "test"):
        setattr(splits, name, getattr(splits, name).to(device, memory_format))
    model = LeNet5(num_classes=len(splits.classes)).to(device, memory_format=memory_format)
    return device, splits, model, build_optimizer(config, model)


def find_lr(config: Config, steps: int = 300) -> RangeTest:
    """Smith's range test for this config's optimizer and batch size, on a fresh model."""
    _, splits, model, optimizer = prepare(config)
    return lr_range_test(model, optimizer, splits.train, steps=steps)


def fit(config: Config, resume: str | Path | None = None, callbacks: Sequence[Callback] = (),
        verbose: bool = True) -> dict[str, Any]:
    """Train as `config` says (or continue the run folder `resume`); returns the contents of metrics.json."""
    if resume is not None:
        run_dir = Path(resume)
        last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
        config = Config.from_dict(last["config"])
    else:
        run_dir = prepare_run_dir(config)
        write_json(run_dir / "config.json", config.to_dict())
    device, splits, model, optimizer = prepare(config)
    scheduler = build_scheduler(config, optimizer, len(splits.train))
    state = RunState(config, model, optimizer, scheduler, splits, run_dir, device)
    stopper = EarlyStopping(config.patience)
    if resume is not None:
        model.load_state_dict(last["model"])
        optimizer.load_state_dict(last["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(last["scheduler"])
        torch.set_rng_state(last["rng"])
        state.epoch, state.history = last["epoch"], last["history"]
        state.step = state.epoch * len(splits.train)
        for record in state.history:
            stopped = stopper.step(record["val_loss"], record["epoch"])
        if stopped or state.epoch >= config.epochs:
            raise LenetError(f"{run_dir} has already finished: start a new run instead.")

    callbacks = [TensorBoardLogger(), CheckpointSaver(), *callbacks]
    for callback in callbacks:
        callback.on_train_start(state)

    def on_step(loss: torch.Tensor) -> None:
        state.step += 1
        for callback in callbacks:
            callback.on_step(state, loss)

    for epoch in range(state.epoch + 1, config.epochs + 1):
        state.epoch = splits.train.epoch = epoch
        lr = optimizer.param_groups[0]["lr"]
        start = time.perf_counter()
        train_loss, train_accuracy = train_one_epoch(model, splits.train, optimizer, scheduler, on_step,
                                                     description=f"epoch {epoch}/{config.epochs}")
        seconds = time.perf_counter() - start
        val_loss, val_accuracy = evaluate(model, splits.val)
        state.history.append({"epoch": epoch, "train_loss": train_loss, "train_accuracy": train_accuracy,
                              "val_loss": val_loss, "val_accuracy": val_accuracy, "lr": lr, "seconds": seconds})
        stop = stopper.step(val_loss, epoch)
        state.improved = stopper.best_epoch == epoch
        for callback in callbacks:
            callback.on_epoch_end(state)
        if verbose:
            print(f"epoch {epoch:2d}  train loss {train_loss:.4f} acc {train_accuracy:.2%}  "
                  f"val loss {val_loss:.4f} acc {val_accuracy:.2%}  {seconds:.1f}s"
                  + ("  *best" if state.improved else ""), flush=True)
        if stop:
            if verbose:
                print(f"early stop: val loss has not improved for {config.patience} epochs", flush=True)
            break

    # Report on the checkpoint with the lowest val loss: the one early stopping chose.
    best = load_checkpoint(run_dir / "checkpoints" / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    test_loss, test_accuracy = evaluate(model, splits.test)
    state.result = {"run_dir": str(run_dir), "history": state.history, "best_epoch": best["epoch"],
                    "best_val_loss": best["metrics"]["val_loss"], "test_loss": test_loss,
                    "test_accuracy": test_accuracy, "stopped_early": state.epoch < config.epochs,
                    "normalization": {"mean": splits.mean, "std": splits.std}, "device": str(device)}
    write_json(run_dir / "metrics.json", state.result)
    for callback in callbacks:
        callback.on_train_end(state)
    if verbose:
        print(f"best epoch {best['epoch']}: test accuracy {test_accuracy:.2%} (test loss {test_loss:.4f}); "
              f"run saved in {run_dir}", flush=True)
    return state.result


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-train` / `python -m lenet.train`."""
    parser = build_parser("lenet-train", description="Train LeNet-5 on MNIST.")
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue runs/<run> from its last.pt with its own config (default: off)")
    parser.add_argument("--find-lr", action="store_true",
                        help="run the learning-rate range test for this config instead of training (default: off)")
    args = parser.parse_args(argv)
    config = config_from_args(args, parser)
    try:
        if args.find_lr:
            result = find_lr(config)
            print(f"{config.optimizer}, batch {config.batch_size}: loss lowest at lr "
                  f"{result.suggested_lr * 10:.2g}{' before diverging' if result.diverged else ''}; "
                  f"suggested maximum lr {result.suggested_lr:.2g} (for --schedule onecycle --lr)")
            return 0
        fit(config, resume=args.resume)
    except LenetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted: continue with --resume and the run folder.", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
