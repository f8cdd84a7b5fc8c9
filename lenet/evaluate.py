"""Judging a model: its loss and accuracy on a split (every epoch, on validation), and the step after training,
`finish`: best.pt calibrated, its refusal of non-digits fitted, and one pass over the test split.

The test split takes part in no decision: `finish` runs once, on the checkpoint that validation chose.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from lenet import runs
from lenet.calibration import expected_calibration_error, fit_temperature
from lenet.checkpoint import load_checkpoint, save_checkpoint, with_calibration
from lenet.data import TensorBatches
from lenet.refusal import Refusal

if TYPE_CHECKING:
    from lenet.callbacks import RunState


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, batches: TensorBatches) -> torch.Tensor:
    """(N, classes) logits of `model` for every image of `batches`, in order."""
    model.eval()
    return torch.cat([model(images) for images, _ in batches])


def loss_and_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and the share of argmax predictions that match `labels`."""
    return F.cross_entropy(logits.float(), labels).item(), (logits.argmax(1) == labels).sum().item() / len(labels)


def evaluate(model: torch.nn.Module, batches: TensorBatches) -> tuple[float, float]:
    """(mean loss, accuracy) of `model` on `batches`, without gradients."""
    return loss_and_accuracy(predict_logits(model, batches), batches.labels)


def finish(state: "RunState") -> dict[str, Any]:
    """The step after training: load best.pt (early stopping's choice) into the model, fit its temperature
    (`lenet.calibration`) and its refusal (`lenet.refusal`) on validation, store both in best.pt, and test it once.
    Returns the run's result, as metrics.json holds it."""
    path = runs.checkpoint_path(state.run_dir, runs.BEST)
    best = load_checkpoint(path, map_location=state.device)
    state.model.load_state_dict(best["model"])
    splits = state.splits
    logits = predict_logits(state.model, splits.val)
    temperature = fit_temperature(logits, splits.val.labels)
    refusal = Refusal.fit(state.model, splits.train.images, splits.val.images, logits.float() / temperature,
                          seed=state.config.seed)
    save_checkpoint(with_calibration(best, temperature, refusal), path)
    return final_result(state, temperature, refusal)


def final_result(state: "RunState", temperature: float, refusal: Refusal) -> dict[str, Any]:
    """The run's result (metrics.json): the best epoch's test loss, accuracy and calibration, one pass over test."""
    splits, best = state.splits, min(state.history, key=lambda record: record["val_loss"])
    logits, labels = predict_logits(state.model, splits.test).float().cpu(), splits.test.labels.cpu()
    test_loss, test_accuracy = loss_and_accuracy(logits, labels)
    return {"run_dir": str(state.run_dir), "history": state.history, "best_epoch": best["epoch"],
            "best_val_loss": best["val_loss"], "test_loss": test_loss, "test_accuracy": test_accuracy,
            "stopped_early": state.epoch < state.config.epochs, "temperature": temperature,
            "familiarity_below": refusal.familiarity_below, "evidence_below": refusal.evidence_below,
            "test_ece": {"before": expected_calibration_error(logits.softmax(1), labels),
                         "after": expected_calibration_error((logits / temperature).softmax(1), labels)},
            "normalization": {"mean": splits.mean, "std": splits.std}, "device": str(state.device)}
