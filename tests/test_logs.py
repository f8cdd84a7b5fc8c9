"""lenet.notebook.logs: the event-file readers give back what a SummaryWriter wrote."""

import numpy as np
import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from lenet.notebook.logs import read_histograms, read_scalars


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


def test_read_scalars_of_a_folder_without_event_files_is_empty(tmp_path):
    assert read_scalars(tmp_path) == {}
