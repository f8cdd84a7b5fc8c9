"""lenet.plots: figures hold what was asked for, counts are right, event files read back what was written."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch.utils.tensorboard import SummaryWriter  # noqa: E402

from lenet.plots import (confusion_matrix, plot_band, plot_confusion_matrix, plot_histogram_ridge,  # noqa: E402
                         plot_history, read_histograms, read_scalars, show_images)


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


def test_plot_history_marks_the_best_epoch_on_both_panels():
    history = [{"epoch": e, "train_loss": 1 / e, "val_loss": abs(e - 3) + 0.1, "train_accuracy": 0.5 + e / 20,
                "val_accuracy": 0.6} for e in range(1, 6)]
    figure = plot_history(history, best_epoch=3)
    for ax in figure.get_axes():
        train, val, marker = ax.get_lines()
        assert list(train.get_xdata()) == [1, 2, 3, 4, 5]
        assert list(marker.get_xdata()) == [3, 3]
    assert list(figure.get_axes()[0].get_lines()[1].get_ydata()) == pytest.approx([2.1, 1.1, 0.1, 1.1, 2.1])


def test_confusion_matrix_matches_counts_made_by_hand():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (500,), generator=generator)
    predictions = torch.where(torch.rand(500, generator=generator) < 0.7, labels,
                              torch.randint(0, 4, (500,), generator=generator))
    expected = torch.zeros(4, 4, dtype=torch.long)
    for true, predicted in zip(labels.tolist(), predictions.tolist()):
        expected[true, predicted] += 1
    matrix = confusion_matrix(labels, predictions, num_classes=4)
    assert torch.equal(matrix, expected)
    assert matrix.sum() == 500 and matrix.trace() == (labels == predictions).sum()


def test_plot_confusion_matrix_writes_every_nonzero_count():
    matrix = torch.tensor([[5, 0], [2, 9]])
    ax = plot_confusion_matrix(matrix, ["a", "b"])
    assert sorted(text.get_text() for text in ax.texts) == ["2", "5", "9"]


def test_read_scalars_returns_what_a_summary_writer_wrote(tmp_path):
    writer = SummaryWriter(log_dir=str(tmp_path))
    for step, value in ((1, 0.5), (2, 0.25), (3, 0.125)):
        writer.add_scalar("loss/val", value, step)
    writer.add_scalar("accuracy/val", 0.9, 1)
    writer.close()
    scalars = read_scalars(tmp_path)
    assert set(scalars) == {"loss/val", "accuracy/val"}
    steps, values = scalars["loss/val"]
    assert steps.tolist() == [1, 2, 3]
    np.testing.assert_allclose(values, [0.5, 0.25, 0.125])


def test_read_histograms_recovers_count_mean_and_spread_of_the_logged_values(tmp_path):
    generator = torch.Generator().manual_seed(0)
    logged = {step: torch.randn(1000, generator=generator) * step for step in (1, 2, 3)}
    writer = SummaryWriter(log_dir=str(tmp_path))
    for step, values in logged.items():
        writer.add_histogram("weights/w", values, step)
    writer.add_histogram("gradients/w", torch.zeros(10), 1)
    writer.close()
    histograms = read_histograms(tmp_path, prefix="weights/")
    assert list(histograms) == ["weights/w"]
    for histogram, (step, values) in zip(histograms["weights/w"], logged.items()):
        assert histogram.step == step and histogram.num == 1000 and histogram.counts.sum() == 1000
        assert histogram.mean == pytest.approx(values.mean().item(), abs=1e-4)
        assert histogram.std == pytest.approx(values.std(unbiased=False).item(), rel=1e-4)
        assert histogram.on_grid(np.linspace(histogram.limits[0], histogram.limits[-1], 11)).sum() == 1000
        np.testing.assert_allclose(histogram.on_grid(np.array([-np.inf, 0.0, np.inf])),
                                   [(values <= 0).sum(), (values > 0).sum()], atol=5)


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
