import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from conftest import make_dataset  # the fixtures' dataset writer
from helpers import StopAfter, real_mnist_dir
from lenet.callbacks import EarlyStopping
from lenet.checkpoint import load_checkpoint
from lenet.config import Config
from lenet.errors import LenetError
from lenet.train import fit, resolve_device


@pytest.mark.slow
def test_fit_learns_and_writes_a_self_describing_run(tiny_config):
    result = fit(tiny_config, verbose=False)
    history = result["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["val_accuracy"] > 0.9 and result["test_accuracy"] > 0.9
    run_dir = tiny_config_dir(tiny_config)
    assert json.loads((run_dir / "config.json").read_text()) == tiny_config.to_dict()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"history", "test_accuracy", "best_epoch"} <= set(metrics)
    assert all({"train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds"} <= set(r)
               for r in metrics["history"])
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["best.pt", "epoch_01.pt", "epoch_02.pt", "epoch_03.pt", "last.pt"]
    assert load_checkpoint(run_dir / "checkpoints" / "best.pt")["epoch"] == metrics["best_epoch"]
    assert any(p.name.startswith("events.out.tfevents") for p in run_dir.iterdir())


def tiny_config_dir(config):
    from pathlib import Path
    return Path(config.runs_dir) / config.run_name


def test_tensorboard_logs_scalars_histograms_images_and_hparams(tiny_config):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    fit(dataclasses.replace(tiny_config, epochs=2), verbose=False)
    events = EventAccumulator(str(tiny_config_dir(tiny_config)), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {"loss/train", "loss/val", "accuracy/train", "accuracy/val", "learning_rate", "loss/train_step"} \
        <= set(tags["scalars"])
    assert len(events.Scalars("loss/val")) == 2
    assert {"weights/conv1.weight", "gradients/conv1.weight", "weights/fc3.bias"} <= set(tags["histograms"])
    assert "inputs" in tags["images"] and tags["graph"]


@pytest.mark.parametrize("schedule, scribbles", [("constant", 0), ("onecycle", 0), ("onecycle", 8)])
def test_resume_ends_where_an_uninterrupted_run_would(tiny_config, schedule, scribbles):
    config = dataclasses.replace(tiny_config, schedule=schedule, max_shift=1, patience=0, scribbles=scribbles)
    full = fit(dataclasses.replace(config, run_name="full"), verbose=False)
    with pytest.raises(KeyboardInterrupt):
        fit(dataclasses.replace(config, run_name="cut"), callbacks=[StopAfter(2)], verbose=False)
    resumed = fit(None, resume=tiny_config_dir(dataclasses.replace(config, run_name="cut")), verbose=False)
    assert resumed["history"][-1]["val_loss"] == full["history"][-1]["val_loss"]
    last = lambda name: load_checkpoint(tiny_config_dir(dataclasses.replace(config, run_name=name))
                                        / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a, b) for a, b in zip(last("full").values(), last("cut").values()))


def test_early_stopping_answers_stop_after_patience_epochs_without_improvement():
    stopper = EarlyStopping(patience=2)
    answers = [stopper.step(loss, epoch) for epoch, loss in enumerate([1.0, 0.8, 0.85, 0.9, 0.7], start=1)]
    assert answers == [False, False, False, True, False]
    assert stopper.best_epoch == 5  # a later improvement resets the count
    assert not any(EarlyStopping(patience=0).step(loss, i) for i, loss in enumerate([1, 2, 3, 4]))


@pytest.mark.slow
def test_early_stopping_fires_on_rising_val_loss_and_restores_the_best(tmp_path):
    # Random labels: the network can only memorise, so validation loss rises from the first epochs.
    data = make_dataset(tmp_path / "noise", n_train=600, n_test=100, random_labels=True)
    config = Config(data_dir=str(data), val_size=100, batch_size=16, epochs=30, patience=2, lr=3e-3,
                    runs_dir=str(tmp_path / "runs"), run_name="noise", device="cpu")
    result = fit(config, verbose=False)
    assert result["stopped_early"] and len(result["history"]) < 30
    val_losses = [r["val_loss"] for r in result["history"]]
    assert result["best_epoch"] == 1 + val_losses.index(min(val_losses))
    assert len(result["history"]) == result["best_epoch"] + 2
    best = load_checkpoint(tmp_path / "runs" / "noise" / "checkpoints" / "best.pt")
    assert best["epoch"] == result["best_epoch"]


@pytest.mark.slow
def test_existing_run_is_not_overwritten_by_accident(tiny_config):
    fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)
    with pytest.raises(LenetError, match="already exists"):
        fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)
    fit(dataclasses.replace(tiny_config, epochs=1, overwrite=True), verbose=False)


def test_unavailable_device_is_a_clear_error():
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(LenetError, match="--device cuda is not available"):
            resolve_device("cuda")


@pytest.mark.slow
def test_same_seed_same_result(tiny_config):
    a = fit(dataclasses.replace(tiny_config, epochs=1, run_name="a"), verbose=False)
    b = fit(dataclasses.replace(tiny_config, epochs=1, run_name="b"), verbose=False)
    assert a["history"][0]["val_loss"] == b["history"][0]["val_loss"]


@pytest.mark.slow
def test_cli_trains_and_prints_one_line_per_epoch(tiny_mnist, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lenet.cli.train", "--data-dir", str(tiny_mnist), "--val-size", "200", "--epochs", "2",
         "--runs-dir", str(tmp_path), "--run-name", "cli", "--device", "cpu"],
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("epoch  1") and lines[1].startswith("epoch  2")
    assert "test accuracy" in lines[-1]
    assert "\r" not in result.stderr  # no progress bar when output is not a terminal


@pytest.mark.slow
def test_cli_missing_data_is_one_sentence_without_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", "import sys, torchvision.datasets as d; d.MNIST.download = lambda self: "
         "(_ for _ in ()).throw(RuntimeError('offline')); from lenet.cli.train import main; "
         f"sys.exit(main(['--data-dir', {str(tmp_path)!r}, '--runs-dir', {str(tmp_path / 'runs')!r}]))"],
        capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: mnist not found in") and len(result.stderr.splitlines()) == 1


@pytest.mark.skipif(real_mnist_dir() is None, reason="LENET_DATA_DIR does not hold the official MNIST files")
@pytest.mark.real_mnist
@pytest.mark.slow
def test_short_real_run_reaches_97_percent_validation_accuracy(tmp_path):
    config = Config(data_dir=str(real_mnist_dir()), epochs=2, batch_size=128, lr=3e-3, runs_dir=str(tmp_path),
                    run_name="real", device="cpu")
    result = fit(config, verbose=False)
    assert result["history"][-1]["val_accuracy"] >= 0.97
    assert result["test_accuracy"] >= 0.97
