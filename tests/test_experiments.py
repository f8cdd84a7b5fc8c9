"""lenet.notebook.experiments: notebook settings, per-seed bookkeeping and the summary table, on results made by hand."""

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import fit_result
from lenet.notebook.experiments import (confusion_matrix, first_epoch_reaching, format_value, machine_description,
                               notebook_settings, per_epoch, summarize, summary_table)


def test_notebook_settings_read_the_environment_and_keep_runs_under_runs_notebooks(monkeypatch, capsys):
    monkeypatch.setenv("LENET_QUICK", "1")
    monkeypatch.setenv("LENET_DATA_DIR", "/somewhere/data")
    settings = notebook_settings("..")
    assert settings.quick and settings.data_dir == "/somewhere/data"
    assert Path(settings.runs_dir) == Path("../runs/notebooks")
    assert Path(settings.default_runs_dir) == Path("../runs")
    printed = capsys.readouterr().out
    assert "quick mode" in printed and settings.machine in printed


def test_notebook_settings_default_to_full_mode_and_the_repository_data_folder(monkeypatch, capsys):
    monkeypatch.delenv("LENET_QUICK", raising=False)
    monkeypatch.delenv("LENET_DATA_DIR", raising=False)
    settings = notebook_settings("/repo")
    assert not settings.quick and Path(settings.data_dir) == Path("/repo/data")
    assert "full mode" in capsys.readouterr().out


def test_machine_description_names_the_thread_count():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert "1 torch thread," in machine_description()
    finally:
        torch.set_num_threads(before)
    assert f"torch {torch.__version__.split('+')[0]}" in machine_description()


def test_first_epoch_reaching_is_one_based_and_none_when_never_reached():
    assert first_epoch_reaching([0.9, 0.98, 0.97, 0.99], 0.98) == 2
    assert first_epoch_reaching([0.9, 0.95], 0.98) is None
    assert first_epoch_reaching([0.98 - 1e-12], 0.98) == 1  # a ratio of counts that rounds just below


def test_per_epoch_stacks_one_row_per_run():
    runs = [fit_result([0.9, 0.95]), fit_result([0.8, 0.97])]
    np.testing.assert_allclose(per_epoch(runs, "val_accuracy"), [[0.9, 0.95], [0.8, 0.97]])


def test_summarize_averages_over_seeds_and_times_only_the_seeds_that_reached_a_target():
    runs = [fit_result([0.95, 0.985, 0.99, 0.992], test_accuracy=0.991, seconds=2.0),
            fit_result([0.97, 0.981, 0.979, 0.985], test_accuracy=0.987, seconds=4.0)]
    row = summarize(runs, targets=(0.98, 0.99))
    assert row["epoch 1 val"] == pytest.approx(0.96)
    assert row["final val"] == pytest.approx(0.9885)
    assert row["final val range"] == pytest.approx((0.985, 0.992))
    assert row["test"] == pytest.approx(0.989)
    assert row["val accuracy drops"] == 1  # 0.981 -> 0.979
    assert row["epochs to 98%"] == 2 and row["seconds to 98%"] == pytest.approx((2 * 2.0 + 2 * 4.0) / 2)
    assert row["epochs to 99%"] == 3 and row["seconds to 99%"] == pytest.approx(6.0)
    assert row["seeds at 99%"] == "1 of 2"
    assert row["seconds/epoch"] == pytest.approx(3.0)


def test_summarize_marks_a_target_nobody_reached_as_none():
    row = summarize([fit_result([0.9, 0.95])], targets=(0.985,))
    assert row["epochs to 98.5%"] is None and row["seeds at 98.5%"] == "0 of 1"
    assert format_value("epochs to 98.5%", None) == "—"


def test_summary_table_puts_labels_in_columns_and_formats_each_quantity():
    rows = {"adam": summarize([fit_result([0.95, 0.99])]), "sgd": summarize([fit_result([0.96, 0.9912])])}
    rows["adam"]["peak lr"], rows["sgd"]["peak lr"] = 0.003, 0.05
    table = summary_table(rows, ["peak lr", "final val", "final val loss", "epochs to 99%", "seeds at 99%"])
    header, *lines = table.splitlines()
    assert header.split() == ["adam", "sgd"]
    assert lines[0].split() == ["peak", "lr", "0.003", "0.05"]
    assert lines[1].split()[-2:] == ["99.00%", "99.12%"]
    assert lines[2].split()[-2:] == ["0.2500", "0.2500"]
    assert lines[3].split()[-2:] == ["2.0", "2.0"]
    assert lines[4].count("1 of 1") == 2


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


def test_show_source_gives_the_lines_of_a_function_with_their_numbers_in_its_file():
    import inspect

    from lenet import model
    from lenet.notebook.experiments import show_source

    text = show_source(model.count_parameters)
    first = inspect.getsourcelines(model.count_parameters)[1]
    assert text.splitlines()[0].startswith(f"lenet/model.py:{first}") and "def count_parameters" in text
    only = show_source(model.LeNet5.features, containing=("torch.flatten",)).splitlines()
    assert len(only) == 1 and "torch.flatten" in only[0]
    number = int(only[0].split(":")[1].split()[0])
    assert "torch.flatten" in inspect.getsource(model).splitlines()[number - 1]


def test_without_augmentation_switches_every_augmentation_and_the_non_digits_off_and_nothing_else():
    import dataclasses

    from lenet.config import Config
    from lenet.notebook.experiments import without_augmentation

    config = Config(lr=0.01, epochs=3)
    plain = without_augmentation(config)
    augmentations = [f.name for f in dataclasses.fields(Config) if f.metadata.get("help", "").startswith("augment")]
    assert "max_shift" in augmentations
    assert all(getattr(plain, name) == 0 for name in augmentations) and plain.scribbles == 0
    assert dataclasses.replace(plain, scribbles=config.scribbles,
                               **{name: getattr(config, name) for name in augmentations}) == config
