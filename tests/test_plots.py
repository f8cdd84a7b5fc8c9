"""lenet.notebook.plots: figures hold what was asked for, one image, line, band or count per thing drawn."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from torch import nn  # noqa: E402

from helpers import fit_result  # noqa: E402
from lenet.data import Augmentation  # noqa: E402
from lenet.model import LeNet5, count_parameters  # noqa: E402
from lenet.notebook.logs import read_histograms  # noqa: E402
from lenet.notebook.plots import (forward_steps, plot_architecture, plot_augmentations, plot_band,  # noqa: E402
                                  plot_confusion_matrix, plot_histogram_ridge, plot_history, plot_training_bands,
                                  show_images)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_show_images_draws_one_image_per_input_and_hides_spare_cells():
    figure = show_images(torch.rand(7, 1, 28, 28), titles=[str(i) for i in range(7)], ncols=4)
    axes = figure.get_axes()
    assert len(axes) == 8  # 2 rows of 4
    assert sum(len(ax.images) for ax in axes) == 7
    assert [ax.get_title() for ax in axes[:7]] == [str(i) for i in range(7)]


def test_show_images_symmetric_centres_the_colour_scale_on_zero():
    figure = show_images(np.array([[[-0.5, 2.0], [0.0, 1.0]]]), symmetric=True)
    assert figure.get_axes()[0].images[0].get_clim() == (-2.0, 2.0)


def test_plot_band_draws_the_mean_and_a_min_max_band():
    _, ax = plt.subplots()
    runs = np.array([[1.0, 2.0, 3.0], [3.0, 4.0, 7.0]])
    plot_band(ax, [1, 2, 3], runs, label="adam")
    line, = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0, 5.0])
    band, = ax.collections
    lows_and_highs = band.get_paths()[0].vertices[:, 1]
    assert lows_and_highs.min() == 1.0 and lows_and_highs.max() == 7.0


def test_plot_training_bands_draws_a_band_per_label_and_keeps_epoch_1_in_view():
    results = {"adam": [fit_result([0.90, 0.97, 0.99]), fit_result([0.92, 0.98, 0.99])],
               "sgd": [fit_result([0.95, 0.98, 0.991])]}
    train_ax, val_ax, accuracy_ax = plot_training_bands(results, colors={"adam": "tab:blue"}).get_axes()
    for ax in (train_ax, val_ax, accuracy_ax):
        assert [line.get_label() for line in ax.get_lines()][:2] == ["adam", "sgd"]
        assert len(ax.collections) == 1  # a band only where there are several seeds
    np.testing.assert_allclose(accuracy_ax.get_lines()[0].get_ydata(), [91.0, 97.5, 99.0])
    assert accuracy_ax.get_ylim()[0] <= 90.0  # the worst epoch-1 seed is inside the axis
    assert train_ax.get_yscale() == "log" and accuracy_ax.get_yscale() == "linear"


def test_plot_history_marks_the_best_epoch_on_both_panels():
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": abs(e - 3) + 0.1, "train_accuracy": 0.5 + e / 20,
                "val_accuracy": 0.6} for e in range(1, 6)]
    figure = plot_history(history, best_epoch=3)
    for ax in figure.get_axes():
        train, val, marker = ax.get_lines()
        assert list(train.get_xdata()) == [1, 2, 3, 4, 5]
        assert list(marker.get_xdata()) == [3, 3]
    assert list(figure.get_axes()[0].get_lines()[1].get_ydata()) == pytest.approx([2.1, 1.1, 0.1, 1.1, 2.1])


def test_plot_confusion_matrix_writes_every_nonzero_count():
    matrix = torch.tensor([[5, 0], [2, 9]])
    ax = plot_confusion_matrix(matrix, ["a", "b"])
    assert sorted(text.get_text() for text in ax.texts) == ["2", "5", "9"]


def test_histogram_ridge_draws_one_line_per_step_even_for_a_dead_layer(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    for step in range(4):
        writer.add_histogram("weights/w", torch.randn(200) + step, step)
        writer.add_histogram("gradients/w", torch.zeros(200), step)
    writer.close()
    histograms = read_histograms(tmp_path)
    assert len(plot_histogram_ridge(histograms["weights/w"]).get_lines()) == 4
    dead = plot_histogram_ridge(histograms["gradients/w"], overlap=0)
    assert len(dead.get_lines()) == 4 and np.isfinite(dead.get_lines()[0].get_ydata()).all()


def output_shapes_by_running(model: nn.Module) -> list[tuple[int, ...]]:
    """The reference: the output shape of each of LeNet5's layers, by calling them one after the other by hand."""
    x, shapes = torch.zeros(1, 1, 28, 28), []
    for step in (model.conv1, lambda t: nn.functional.max_pool2d(t, 2), model.conv2,
                 lambda t: nn.functional.max_pool2d(t, 2), lambda t: torch.flatten(t, 1), model.fc1, model.fc2,
                 model.fc3):
        x = step(x)
        shapes.append(tuple(x.shape[1:]))
    return shapes


def test_forward_steps_find_every_layer_and_function_with_the_models_own_shapes_and_counts():
    model = LeNet5()
    steps = forward_steps(model)
    assert [step.name for step in steps] == ["conv1", "max_pool2d", "relu", "conv2", "max_pool2d", "relu", "flatten",
                                            "fc1", "relu", "fc2", "relu", "fc3"]
    assert [step.shape for step in steps if step.name != "relu"] == output_shapes_by_running(model)
    assert sum(step.parameters for step in steps) == count_parameters(model)
    assert {step.name: step.parameters for step in steps if step.parameters} == {
        name: sum(p.numel() for p in module.parameters()) for name, module in model.named_children()}


def test_architecture_figure_is_labelled_with_the_models_real_shapes_and_parameter_counts():
    model = LeNet5()
    texts = [text.get_text() for text in plot_architecture(model).get_axes()[0].texts]
    labels = " ".join(texts)
    for name, module in model.named_children():
        assert f"{sum(p.numel() for p in module.parameters()):,}\nparameters" in texts, name
    for shape in ["1×28×28", "6×28×28", "6×14×14", "16×10×10", "16×5×5", "400", "120", "84", "10"]:
        assert shape in texts
    assert "max-pool 2×2" in labels and "5×5 conv" in labels
    assert f"{count_parameters(model):,} parameters" in plot_architecture(model).get_axes()[0].get_title()


def test_architecture_figure_follows_a_changed_model_rather_than_a_table():
    # Notebook 02's exercise: LeNet-5 without its second pooling layer. Nothing in the figure is typed in.
    variant = nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(6, 16, 5), nn.ReLU(),
                            nn.Flatten(), nn.Linear(16 * 10 * 10, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                            nn.Linear(84, 10))
    ax = plot_architecture(variant).get_axes()[0]
    texts = [text.get_text() for text in ax.texts]
    assert "1600" in texts and "192,120\nparameters" in texts and "16×5×5" not in texts
    assert f"{count_parameters(variant):,} parameters" in ax.get_title()


def test_plot_augmentations_shows_the_original_first_then_one_changed_copy_per_draw():
    image = torch.full((1, 28, 28), -0.4)
    image[0, 8:20, 12:16] = 2.8  # a bar of ink
    figure = plot_augmentations(image, Augmentation(max_shift=2, rotate=15, thicken=0.3, thin=0.2), copies=7, ncols=4)
    axes = figure.get_axes()
    assert len(axes) == 8 and [ax.get_title() for ax in axes] == ["original"] + [f"draw {i}" for i in range(1, 8)]
    shown = [ax.images[0].get_array() for ax in axes]
    np.testing.assert_array_equal(shown[0], image[0].numpy())
    assert all(not np.allclose(copy, shown[0]) for copy in shown[1:])  # every draw changed the digit
    assert len({copy.tobytes() for copy in shown[1:]}) == 7  # and each its own way


def test_plot_augmentations_without_augmentation_shows_the_image_unchanged():
    image = torch.rand(1, 1, 28, 28)
    axes = plot_augmentations(image, Augmentation(), copies=3, ncols=4).get_axes()
    assert all(np.array_equal(ax.images[0].get_array(), image[0, 0].numpy()) for ax in axes)
