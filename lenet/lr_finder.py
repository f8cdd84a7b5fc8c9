"""Smith's learning-rate range test (arXiv 1506.01186, 1803.09820): sweep the rate until the loss diverges.

The rate grows exponentially, one training step at a time, from a tiny value; the loss first falls,
then flattens, then explodes. The largest rate at which it still falls well is a good maximum rate
for the 1cycle schedule. The sweep trains a copy, so the model and optimizer it was given are untouched.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lenet.config import Config
from lenet.data import TensorBatches
from lenet.errors import LenetError
from lenet.train import build_run


def find_lr(config: Config, steps: int = 300) -> "RangeTest":
    """Smith's range test for this config's optimizer and batch size, on a fresh model."""
    _, splits, model, optimizer = build_run(config)  # the data, model and optimizer exactly as `fit` builds them
    return lr_range_test(model, optimizer, splits.train, steps=steps)


@dataclass
class RangeTest:
    """The curve of a range test and the maximum learning rate it suggests."""

    lrs: list[float]
    losses: list[float]  # smoothed (exponential moving average, bias-corrected)
    raw_losses: list[float]
    suggested_lr: float
    diverged: bool  # whether the sweep stopped because the loss exploded


def lr_range_test(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: TensorBatches,
                  start_lr: float = 1e-6, end_lr: float = 10.0, steps: int = 300, smoothing: float = 0.05,
                  diverge_factor: float = 4.0) -> RangeTest:
    """Sweep the rate from start_lr to end_lr over at most `steps` batches, on copies of model and optimizer."""
    if not 0 < start_lr < end_lr:
        raise LenetError(f"the range test needs 0 < start_lr < end_lr, got {start_lr} and {end_lr}.")
    if steps < 10:
        raise LenetError(f"the range test needs at least 10 steps, got {steps}.")
    trial = copy.deepcopy(model).train()
    trial_optimizer = type(optimizer)(trial.parameters(), **optimizer.defaults)
    # The optimizer's state (Adam's moments, SGD's momentum) carries over to the copy, not back.
    trial_optimizer.load_state_dict(copy.deepcopy(optimizer.state_dict()))
    batches = dataclasses.replace(batches)  # a copy: its epoch counter advances, the caller's does not
    growth = (end_lr / start_lr) ** (1 / (steps - 1))
    lrs, losses, raw_losses = [], [], []
    average, best, diverged, step = 0.0, math.inf, False, 0
    while step < steps and not diverged:
        for images, labels in batches:
            lr = start_lr * growth ** step
            for group in trial_optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(trial(images), labels)
            trial_optimizer.zero_grad(set_to_none=True)
            loss.backward()
            trial_optimizer.step()
            value = loss.item()
            average = smoothing * value + (1 - smoothing) * average
            smoothed = average / (1 - (1 - smoothing) ** (step + 1))
            lrs.append(lr)
            raw_losses.append(value)
            losses.append(smoothed)
            best = min(best, smoothed)
            step += 1
            if not math.isfinite(smoothed) or smoothed > diverge_factor * best:
                diverged = True
            if diverged or step >= steps:
                break
        batches.epoch += 1
    return RangeTest(lrs, losses, raw_losses, suggest_lr(lrs, losses), diverged)


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """A tenth of the rate at the lowest smoothed loss: still on the falling slope, short of the cliff."""
    finite = [(loss, lr) for lr, loss in zip(lrs, losses) if math.isfinite(loss)]
    return min(finite)[1] / 10
