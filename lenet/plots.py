"""Plots the notebooks share, and reading a run's TensorBoard event files back into plain Python.

Every plotting function draws with matplotlib and returns the Figure or Axes it drew on, so a
notebook can add to it and a test can count what is on it. Nothing here trains or changes a run.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator


def show_images(images: torch.Tensor | np.ndarray, titles: Sequence[str] | None = None, ncols: int = 10,
                cmap: str = "gray", symmetric: bool = False, size: float = 1.1) -> Figure:
    """A grid of (N, H, W) or (N, 1, H, W) images with optional titles; symmetric centres the colours on 0."""
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images, dtype=float)
    images = images.reshape(len(images), *images.shape[-2:])
    ncols = min(ncols, len(images))
    nrows = math.ceil(len(images) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * (1.25 if titles else 1)),
                                squeeze=False)
    # One colour scale per image: filters and mean images differ in range, digits do not.
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index >= len(images):
            continue
        image = images[index]
        limit = np.abs(image).max() or 1.0
        ax.imshow(image, cmap=cmap, vmin=-limit if symmetric else None, vmax=limit if symmetric else None)
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    figure.tight_layout()
    return figure


def plot_band(ax: Axes, x: Sequence[float], runs: np.ndarray | Sequence[Sequence[float]], label: str,
              color: str | None = None) -> None:
    """The mean over runs (rows of `runs`) as a line, and the min-to-max range over runs as a shaded band."""
    runs = np.asarray(runs, dtype=float)
    line, = ax.plot(x, runs.mean(axis=0), label=label, color=color)
    if len(runs) > 1:
        ax.fill_between(x, runs.min(axis=0), runs.max(axis=0), color=line.get_color(), alpha=0.2, linewidth=0)


def plot_history(history: Sequence[dict[str, float]], best_epoch: int | None = None) -> Figure:
    """Train and val loss (left) and accuracy (right) per epoch, with the best epoch marked on both."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
        for split, style in (("train", "--"), ("val", "-")):
            ax.plot(epochs, [record[f"{split}_{metric}"] for record in history], style, marker="o", markersize=3,
                    label=split)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="grey", linestyle=":", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(metric)
        ax.legend()
    figure.tight_layout()
    return figure


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(num_classes, num_classes) counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: torch.Tensor, classes: Sequence[str], ax: Axes | None = None) -> Axes:
    """The confusion matrix as a heat map on a log colour scale, each cell labelled with its count."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 5.4))
    counts = np.asarray(matrix)
    # log1p: the diagonal holds ~1,000 per class and the mistakes a handful; a linear scale hides them.
    image = ax.imshow(np.log1p(counts), cmap="Blues")
    threshold = np.log1p(counts).max() / 2
    for (row, col), count in np.ndenumerate(counts):
        if count:
            ax.text(col, row, str(count), ha="center", va="center", fontsize=7,
                    color="white" if np.log1p(count) > threshold else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ticks = [t for t in (0, 1, 10, 100, 1000, 10000) if t <= max(counts.max(), 1)]
    colorbar = ax.figure.colorbar(image, ax=ax, label="count (log scale)", ticks=np.log1p(ticks))
    colorbar.ax.set_yticklabels([str(t) for t in ticks])
    return ax


@dataclass
class Histogram:
    """One logged histogram: bucket i counts values in (limits[i-1], limits[i]]; counts[0] is the left edge."""

    step: int
    limits: np.ndarray
    counts: np.ndarray
    min: float
    max: float
    num: float
    sum: float
    sum_squares: float

    @property
    def mean(self) -> float:
        """The mean of the logged values."""
        return self.sum / self.num

    @property
    def std(self) -> float:
        """The standard deviation of the logged values."""
        return math.sqrt(max(self.sum_squares / self.num - self.mean ** 2, 0.0))

    def on_grid(self, edges: np.ndarray) -> np.ndarray:
        """Counts re-binned onto `edges`, spreading each bucket evenly over its width."""
        # TensorBoard's buckets grow geometrically away from 0, so counts per bucket mislead the eye;
        # interpolating the cumulative count onto an even grid gives comparable bars.
        cumulative = np.cumsum(self.counts)
        return np.diff(np.interp(edges, self.limits, cumulative, left=0.0, right=cumulative[-1]))


def _accumulator(run_dir: str | os.PathLike):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # size_guidance 0 keeps every event; the default samples scalars and histograms down.
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def read_scalars(run_dir: str | os.PathLike) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar tag in a run folder's event files, as tag -> (steps, values)."""
    accumulator = _accumulator(run_dir)
    result = {}
    for tag in accumulator.Tags()["scalars"]:
        events = accumulator.Scalars(tag)
        result[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return result


def read_histograms(run_dir: str | os.PathLike, prefix: str = "") -> dict[str, list[Histogram]]:
    """Every histogram tag starting with `prefix` in a run folder's event files, as tag -> one Histogram per step."""
    accumulator = _accumulator(run_dir)
    result = {}
    for tag in accumulator.Tags()["histograms"]:
        if tag.startswith(prefix):
            result[tag] = [Histogram(e.step, np.array(h.bucket_limit), np.array(h.bucket), h.min, h.max, h.num,
                                     h.sum, h.sum_squares)
                           for e in accumulator.Histograms(tag) for h in [e.histogram_value]]
    return result


def plot_histogram_ridge(histograms: Sequence[Histogram], ax: Axes | None = None, bins: int = 60,
                         overlap: float = 1.5, value_range: tuple[float, float] | None = None) -> Axes:
    """One histogram per step, stacked upwards like TensorBoard's offset view (overlap 0: one shared baseline)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    low, high = value_range or (min(h.min for h in histograms), max(h.max for h in histograms))
    if low == high:  # every value identical (a dead layer's zero gradients): give the spike some width
        low, high = low - 1e-3, high + 1e-3
    edges = np.linspace(low, high, bins + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    densities = [h.on_grid(edges) / h.num for h in histograms]
    peak = max(d.max() for d in densities) or 1.0
    colors = plt.cm.viridis(np.linspace(0, 0.9, len(histograms)))
    # Drawn from the last step to the first so earlier ridges sit in front, as in TensorBoard.
    for index in reversed(range(len(histograms))):
        base = index * (1 / overlap if overlap else 0)
        curve = base + densities[index] / peak
        ax.fill_between(centres, base, curve, color=colors[index], alpha=0.25 if overlap else 0.1, linewidth=0)
        ax.plot(centres, curve, color=colors[index], linewidth=1, label=f"step {histograms[index].step}")
    ax.set_yticks([])
    ax.set_xlabel("value")
    return ax
