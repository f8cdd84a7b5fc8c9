"""The plots the notebooks share: image grids, curves over several seeds, training histories,
confusion matrices, TensorBoard-style histogram ridges, the network's architecture drawn from the model
itself, and one digit under the training augmentation.

Every function draws with matplotlib and returns the Figure or Axes it drew on, so a notebook can add
to it and a test can count what is on it. Nothing here trains or changes a run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.ticker import MaxNLocator
from torch import nn

from lenet.data import Augmentation, augment
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


@dataclass(frozen=True)
class Step:
    """One step of a network's forward pass: what it does, the shape it outputs, and its parameters."""

    name: str  # the module's attribute name (conv1) or the function called (max_pool2d)
    operation: str  # in words: "5×5 conv, 6 filters, pad 2", "max-pool 2×2", "ReLU"
    shape: tuple[int, ...]  # the output's shape without the batch dimension
    parameters: int


def forward_steps(model: nn.Module, input_shape: Sequence[int] = (1, 1, 28, 28)) -> list[Step]:
    """Every step of `model`'s forward pass, measured by running a dummy input of `input_shape` through it.

    torch.fx records each call as the input flows, the functions too (LeNet5 calls F.max_pool2d and F.relu,
    which forward hooks on modules never see), so the shapes and counts come from the model, never from a table.
    """
    from torch.fx import symbolic_trace
    from torch.fx.passes.shape_prop import ShapeProp

    traced = symbolic_trace(model)
    with torch.no_grad():
        ShapeProp(traced).propagate(torch.zeros(*input_shape))
    steps = []
    for node in traced.graph.nodes:
        if node.op not in ("call_module", "call_function", "call_method"):
            continue
        shape = tuple(node.meta["tensor_meta"].shape[1:])
        if node.op == "call_module":
            module = traced.get_submodule(node.target)
            parameters = sum(p.numel() for p in module.parameters())
            steps.append(Step(node.target, describe_module(module), shape, parameters))
        else:
            function = re.sub(r"_\d+$", "", node.name)
            size = node.args[1] if function.startswith("max_pool") and len(node.args) > 1 else None
            steps.append(Step(function, describe_function(function, size), shape, 0))
    return steps


def describe_module(module: nn.Module) -> str:
    """A layer in a few words: "5×5 conv, 6 filters, pad 2", "fully connected 400→120", "ReLU"."""
    if isinstance(module, nn.Conv2d):
        height, width = module.kernel_size
        padding = f", pad {module.padding[0]}" if any(module.padding) else ""
        return f"{height}×{width} conv, {module.out_channels} filters{padding}"
    if isinstance(module, nn.Linear):
        return f"fully connected {module.in_features}→{module.out_features}"
    if isinstance(module, nn.MaxPool2d):
        return describe_function("max_pool2d", module.kernel_size)
    return describe_function(type(module).__name__.lower(), None)


def describe_function(name: str, size: Any) -> str:
    """A parameter-free step in a few words."""
    if name.startswith("max_pool"):
        return f"max-pool {size}×{size}" if isinstance(size, int) else "max-pool"
    return {"relu": "ReLU", "flatten": "flatten"}.get(name, name)


def architecture_stages(steps: Sequence[Step]) -> list[Step]:
    """The steps grouped as the figure draws them: a ReLU joins the step before it (it changes no shape)."""
    stages: list[Step] = []
    for step in steps:
        if step.operation == "ReLU" and stages:
            last = stages[-1]
            stages[-1] = Step(last.name, f"{last.operation} + ReLU", last.shape, last.parameters)
        else:
            stages.append(step)
    return stages


def shape_text(shape: Sequence[int]) -> str:
    """(6, 28, 28) -> "6×28×28"."""
    return "×".join(str(size) for size in shape)


def plot_architecture(model: nn.Module, input_shape: Sequence[int] = (1, 1, 28, 28),
                      title: str | None = None) -> Figure:
    """The network as the data flows through it: each tensor drawn to scale and labelled with its shape, each arrow
    with the layer that makes the next tensor and its parameter count; every number comes from `forward_steps`."""
    stages = architecture_stages(forward_steps(model, input_shape))
    shapes = [tuple(input_shape[1:])] + [stage.shape for stage in stages]
    total = sum(p.numel() for p in model.parameters())
    figure, ax = plt.subplots(figsize=(1.3 * len(shapes), 3.6))
    largest = max((shape[-1] for shape in shapes if len(shape) == 3), default=1)
    longest = max((math.prod(shape) for shape in shapes if len(shape) == 1), default=1)
    for index, shape in enumerate(shapes):
        draw_tensor(ax, index, shape, largest, longest)
        ax.text(index, -0.62, shape_text(shape), ha="center", va="top", fontsize=9, fontweight="bold")
    ax.text(0, 0.45, "input", ha="center", va="bottom", fontsize=9)
    ax.text(len(shapes) - 1, 0.45, "logits", ha="center", va="bottom", fontsize=9)
    for index, stage in enumerate(stages):
        ax.add_patch(FancyArrowPatch((index + 0.36, 0), (index + 0.64, 0), arrowstyle="-|>", mutation_scale=10,
                                     color="0.35", linewidth=1))
        label = stage.operation.replace(", ", "\n").replace(" + ", "\n+ ").replace("connected ", "connected\n")
        if stage.parameters:
            label = f"{stage.name}\n{label}"
        ax.text(index + 0.5, 0.62, label, ha="center", va="bottom", fontsize=7.5, linespacing=1.2)
        if stage.parameters:
            ax.text(index + 0.5, -0.95, f"{stage.parameters:,}\nparameters", ha="center", va="top", fontsize=8,
                    color="tab:blue")
    ax.set_title(title or f"{type(model).__name__}: {total:,} parameters", fontsize=11)
    ax.set_xlim(-0.55, len(shapes) - 0.45)
    ax.set_ylim(-1.45, 1.45)
    ax.set_aspect("equal")
    ax.set_axis_off()
    figure.tight_layout()
    return figure


def draw_tensor(ax: Axes, x: float, shape: Sequence[int], largest: int, longest: int) -> None:
    """A (channels, height, width) tensor as a stack of feature maps, a vector as a bar, both to scale."""
    if len(shape) == 3:
        channels, height, _ = shape
        side = 0.15 + 0.3 * height / largest  # maps drawn to scale: a 28x28 map is larger than a 5x5 one
        shown = min(channels, 8)  # at most 8 sheets: 16 would be a smear
        offset = 0.022
        for sheet in reversed(range(shown)):
            left = x - side / 2 + (sheet - (shown - 1) / 2) * offset
            bottom = -side / 2 - (sheet - (shown - 1) / 2) * offset
            ax.add_patch(Rectangle((left, bottom), side, side, facecolor=plt.cm.Blues(0.2 + 0.6 * sheet / 8),
                                   edgecolor="0.25", linewidth=0.6))
    else:
        length = math.prod(shape)
        height = 0.1 + 0.7 * math.sqrt(length / longest)  # a bar whose area grows with the vector's length
        ax.add_patch(Rectangle((x - 0.04, -height / 2), 0.08, height, facecolor=plt.cm.Oranges(0.45),
                               edgecolor="0.25", linewidth=0.6))


def plot_augmentations(image: torch.Tensor, augmentation: Augmentation, copies: int = 15, ncols: int = 8,
                       seed: int = 0, size: float = 1.1) -> Figure:
    """One normalized image ((1, H, W) or (1, 1, H, W)) framed in orange, then `copies` random draws of `augmentation`.

    The draws are `lenet.data.augment` itself, the function training applies to every batch (a batch of
    `copies` copies of the image, each changed by its own draw), so the grid shows what the network is shown.
    """
    image = image.reshape(1, 1, *image.shape[-2:])
    variants = augment(image.expand(copies, -1, -1, -1).clone(), augmentation, torch.Generator().manual_seed(seed))
    cells = torch.cat([image, variants])[:, 0].cpu().numpy()  # (1 + copies, H, W)
    nrows = math.ceil(len(cells) / ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.15), squeeze=False)
    low, high = image.min().item(), image.max().item()  # one grey scale: paper and ink keep their values
    for index, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if index >= len(cells):
            ax.set_axis_off()
            continue
        ax.imshow(cells[index], cmap="gray", vmin=low, vmax=high)
        ax.set_title("original" if index == 0 else f"draw {index}", fontsize=8)
        if index == 0:
            for spine in ax.spines.values():
                spine.set_edgecolor("tab:orange")
                spine.set_linewidth(2.5)
    figure.tight_layout()
    return figure


def plot_reliability(tables: Mapping[str, Mapping[str, Sequence[float]]], ax: Axes | None = None) -> Axes:
    """Reliability diagrams (`lenet.calibration.reliability` tables, one per name): the accuracy of each confidence
    bin against its mean confidence, dot size by the share of images in it; on the diagonal, "90% sure" is right
    90% of the time."""
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfectly calibrated")
    for name, table in tables.items():
        used = [i for i, share in enumerate(table["share"]) if share > 0]
        confidence = [table["confidence"][i] for i in used]
        ax.plot(confidence, [table["accuracy"][i] for i in used], marker="o", label=name)
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1.02), ylim=(0, 1.02))
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_tradeoff(curves: Mapping[str, Sequence[tuple[np.ndarray, np.ndarray, tuple[float, float]]]],
                  ax: Axes | None = None) -> Axes:
    """Non-digits refused against real digits kept, one line per (name, seed) as the refusal threshold sweeps; each
    run's operating point (the threshold fitted to keep 99% of the validation digits) is marked with a star."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for color, (name, runs) in zip(colors, curves.items()):
        for index, (kept, refused, (point_kept, point_refused)) in enumerate(runs):
            ax.plot(kept, refused, color=color, alpha=0.8, linewidth=1.2, label=name if index == 0 else None)
            ax.plot([point_kept], [point_refused], marker="*", markersize=12, color=color, markeredgecolor="black",
                    linestyle="none", label="fitted on validation: 99% kept" if index == 0 and color == colors[0] else None)
    ax.set(xlabel="real digits read right (share)", ylabel="non-digits answered \"not a digit\" (share)",
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return ax
