"""Honest confidence: temperature scaling (Guo et al., 2017) and the expected calibration error.

A network trained with cross-entropy is often over-confident: of the digits it calls "99% sure", fewer
than 99% are right. Dividing the logits by one number T > 1, fitted on the validation split, makes
the probabilities mean what they say without changing which class is on top. `fit_temperature`
finds T; `expected_calibration_error` measures the gap between confidence and accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ECE_BINS = 15


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 that minimises the cross-entropy of softmax(logits / T) on (logits, labels)."""
    logits, labels = logits.detach().float().cpu().clone(), labels.cpu()  # clone: not an inference tensor
    log_t = torch.zeros((), requires_grad=True)  # optimise log T so that T stays positive
    optimizer = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def reliability(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per confidence bin: the mean confidence, the accuracy and the share of samples (a reliability diagram)."""
    confidence, predicted = probabilities.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.bucketize(confidence, edges[1:-1])  # bin b holds confidences in (edges[b], edges[b+1]]
    count = torch.bincount(index, minlength=bins).float()
    total = count.clamp(min=1)
    return {"confidence": (torch.bincount(index, confidence, minlength=bins) / total).tolist(),
            "accuracy": (torch.bincount(index, correct, minlength=bins) / total).tolist(),
            "share": (count / len(labels)).tolist(), "edges": edges.tolist()}


def expected_calibration_error(probabilities: torch.Tensor, labels: torch.Tensor, bins: int = ECE_BINS) -> float:
    """The share-weighted mean gap |accuracy - confidence| over confidence bins (0 is perfectly calibrated)."""
    table = reliability(probabilities, labels, bins)
    return sum(share * abs(accuracy - confidence)
               for share, accuracy, confidence in zip(table["share"], table["accuracy"], table["confidence"]))
