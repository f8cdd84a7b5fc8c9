"""The plots the notebooks share: image grids, curves over several seeds, training histories,
confusion matrices and TensorBoard-style histogram ridges.

Every function draws with matplotlib and returns the Figure or Axes it drew on, so a notebook can add
to it and a test can count what is on it. Nothing here trains or changes a run.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lenet.notebook.experiments import per_epoch
from lenet.notebook.logs import Histogram


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


def plot_training_bands(results: Mapping[str, Sequence[Mapping[str, Any]]], colors: Mapping[str, str] | None = None,
                        target: float | None = 0.99) -> Figure:
    """Training loss, validation loss and validation accuracy per epoch: one band over seeds per label.

    `results` maps a label ("adam", "1cycle") to the `fit` results of its seeds. The accuracy axis starts
    below the lowest value drawn, so that epoch 1 is always in view; `target` draws a dotted line.
    """
    figure, axes = plt.subplots(1, 3, figsize=(15, 4))
    lowest = 100.0
    for label, runs in results.items():
        color = (colors or {}).get(label)
        epochs = np.arange(1, len(runs[0]["history"]) + 1)
        plot_band(axes[0], epochs, per_epoch(runs, "train_loss"), label, color)
        plot_band(axes[1], epochs, per_epoch(runs, "val_loss"), label, color)
        accuracy = per_epoch(runs, "val_accuracy") * 100
        plot_band(axes[2], epochs, accuracy, label, color)
        lowest = min(lowest, accuracy.min())
    for ax, title in zip(axes, ("training loss (log scale)", "validation loss (log scale)", "validation accuracy (%)")):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    if target is not None:
        axes[2].axhline(target * 100, color="grey", linestyle=":", linewidth=1)
    axes[2].set_ylim(math.floor(lowest - 0.5), 100)
    axes[2].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    return figure


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
