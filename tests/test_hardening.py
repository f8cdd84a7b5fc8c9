"""Faults a user can cause in lenet-train, lenet-predict and lenet-export: nothing is lost, and each ends in one
clear sentence with exit code 2 (issue: a probe of ~70 bad inputs). The server's faults are in test_serve.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_dataset  # the fixtures' dataset writer
from helpers import StopAfter, drawn_seven, run_module
from lenet.cli import export as export_module
from lenet.checkpoint import load_checkpoint, save_checkpoint
from lenet.config import Config
from lenet.errors import LenetError
from lenet.inference.predict import load_model
from lenet.cli.predict import main as predict_main
from lenet.cli.score import main as score_main
from lenet.cli.train import main as train_main
from lenet.train import Interrupted, fit


def one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2, no traceback, and stderr's error line holds every fragment."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error: " in line]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# 1. Run names and --overwrite never delete anything but a lenet run.
@pytest.mark.parametrize("name", ["..", ".", ".hidden", "a\\b"])
def test_run_names_that_are_not_one_plain_folder_are_refused_and_nothing_is_deleted(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "other").mkdir(parents=True)
    (tmp_path / "keep.txt").write_text("precious\n")
    with pytest.raises(SystemExit) as exit_code:
        train_main(["--run-name", name, "--overwrite", "--runs-dir", "runs"])
    assert exit_code.value.code == 2
    assert (tmp_path / "keep.txt").exists() and (tmp_path / "runs" / "other").is_dir()


def test_overwrite_never_deletes_a_folder_that_is_not_a_lenet_run(tiny_config):
    folder = Path(tiny_config.runs_dir) / tiny_config.run_name
    folder.mkdir(parents=True)
    (folder / "thesis.tex").write_text("years of work\n")
    with pytest.raises(LenetError, match="is not a lenet run .* --overwrite never deletes it"):
        fit(dataclasses.replace(tiny_config, overwrite=True), verbose=False)
    assert (folder / "thesis.tex").exists()


def test_an_existing_run_names_resume_and_another_name_before_overwrite(tiny_config):
    fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)
    with pytest.raises(LenetError) as raised:
        fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)
    message = str(raised.value)
    assert message.index("--run-name") < message.index("--resume") < message.index("--overwrite")


# 2. lenet-export replaces only a regular file, and only with --force.
def test_export_refuses_a_fifo_or_device_and_replaces_a_file_only_with_force(tiny_checkpoint, tmp_path, capsys):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for target in (fifo, Path("/dev/null")):
        assert export_module.main([str(tiny_checkpoint), "--format", "torchscript", "-o", str(target)]) == 2
        assert "is not a regular file" in capsys.readouterr().err
    assert Path("/dev/null").is_char_device() and fifo.is_fifo()
    existing = tmp_path / "model.pt"
    existing.write_bytes(b"my other model")
    assert export_module.main([str(tiny_checkpoint), "--format", "torchscript", "-o", str(existing)]) == 2
    assert "already exists" in capsys.readouterr().err and existing.read_bytes() == b"my other model"
    assert export_module.main([str(tiny_checkpoint), "--format", "torchscript", "-o", str(existing),
                               "--force"]) == 0
    assert existing.read_bytes() != b"my other model"


# 8. File names that are not UTF-8 neither crash printing nor break --json.
@pytest.mark.slow
def test_a_file_name_that_is_not_utf8_is_printed_and_kept_in_valid_json(tiny_checkpoint, tmp_path):
    folder = tmp_path / "digits"
    folder.mkdir()
    drawn_seven(folder / "a.png")
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))
    odd.write_bytes((folder / "a.png").read_bytes())
    env = {"LC_ALL": "C.UTF-8", "PYTHONIOENCODING": ""}
    text = run_module("lenet.cli.predict", folder, "--checkpoint", tiny_checkpoint, env=env)
    assert text.returncode == 0, text.stderr
    assert len(text.stdout.splitlines()) == 2 and "caf\\xe9.png: " in text.stdout
    as_json = subprocess.run([sys.executable, "-m", "lenet.cli.predict", str(folder), "--checkpoint",
                              str(tiny_checkpoint), "--json"], capture_output=True, timeout=300,
                             env={**os.environ, **env})
    assert as_json.returncode == 0
    results = json.loads(as_json.stdout.decode("utf-8"))  # strict: lone surrogates would fail here
    assert [Path(r["file"]).name for r in results] == ["a.png", "caf\\xe9.png"]


# 8b. Paths the OS refuses (a name longer than the file system allows, a path through a file) are one error line
# each, naming the path; lenet-predict and lenet-score still answer for every other input, and exit 2.
REFUSED_PATHS = {
    "a name too long": ("x" * 300, "has a name longer than the file system allows: rename it or use a shorter path."),
    "a path through a file": ("good.png/x", "is not a path to a file (a part of it is a file, not a folder): "
                                            "check the path."),
}


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize("kind", REFUSED_PATHS)
def test_predict_names_a_path_the_os_refuses_and_predicts_the_other_images(kind, tiny_checkpoint, tmp_path, capsys):
    name, reason = REFUSED_PATHS[kind]
    good, bad = drawn_seven(tmp_path / "good.png"), tmp_path / f"{name}.png"
    assert predict_main([str(good), str(bad), "--checkpoint", str(tiny_checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert error_lines(err) == [f"error: {bad} {reason}"]
    assert len(out.splitlines()) == 1 and out.startswith(f"{good}: ")
    checkpoint, runs_dir = tmp_path / f"{name}.pt", tmp_path / name
    assert predict_main([str(good), "--checkpoint", str(checkpoint)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and error_lines(err) == [f"error: {checkpoint} {reason}"]
    assert predict_main([str(good), "--runs-dir", str(runs_dir)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(error_lines(err)) == 1 and str(runs_dir) in err


@pytest.mark.parametrize("kind", REFUSED_PATHS)
def test_score_names_a_path_the_os_refuses_and_scores_the_other_images(kind, tiny_checkpoint, tmp_path, capsys):
    name, reason = REFUSED_PATHS[kind]
    folder = tmp_path / "digits"
    folder.mkdir()
    drawn_seven(folder / "good.png")
    (folder / "labels.json").write_text(json.dumps({"good.png": 7, f"{name}.png": 1}))
    assert score_main([str(folder), "--checkpoint", str(tiny_checkpoint), "--no-sheet"]) == 2
    out, err = capsys.readouterr()
    assert error_lines(err) == [f"error: {folder / name}.png {reason}"]
    assert "/1): " in out.splitlines()[0]  # "accuracy 100.0% (1/1): ..." over the one good image
    for flag, path in (("DIR", folder / name), ("--labels", folder / f"{name}.json"),
                       ("--sheet", folder / f"{name}.png")):
        arguments = [str(path)] if flag == "DIR" else [str(folder), flag, str(path)]
        assert score_main([*arguments, "--checkpoint", str(tiny_checkpoint)]) == 2
        out, err = capsys.readouterr()
        assert out == "" and len(error_lines(err)) == 1 and str(path) in err


@pytest.mark.parametrize("kind", REFUSED_PATHS)
def test_export_names_a_checkpoint_or_output_path_the_os_refuses(kind, tiny_checkpoint, tmp_path, capsys):
    name, reason = REFUSED_PATHS[kind]
    drawn_seven(tmp_path / "good.png")
    bad_checkpoint = tmp_path / f"{name}.pt"
    assert export_module.main([str(bad_checkpoint), "--format", "torchscript", "-o", str(tmp_path / "model.pt")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and error_lines(err) == [f"error: {bad_checkpoint} {reason}"]
    bad_output = tmp_path / f"{name}.pt"
    assert export_module.main([str(tiny_checkpoint), "--format", "torchscript", "-o", str(bad_output)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(error_lines(err)) == 1 and str(bad_output) in err
    assert sorted(path.name for path in tmp_path.iterdir()) == ["good.png"]  # nothing written


# 9. A loss that blows up stops training with one line naming the step and a lower --lr.
def test_a_loss_that_becomes_nan_stops_with_the_step_and_a_lower_lr(tiny_config):
    config = dataclasses.replace(tiny_config, lr=1e6, schedule="constant", log_every=1)
    with pytest.raises(LenetError, match=r"the training loss became (nan|inf) by step \d+ .* try --lr 1e\+05"):
        fit(config, verbose=False)


# 10. A full disk is named as such, and the checkpoints written before are intact.
def test_a_full_disk_is_reported_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    path = save_checkpoint({"model": {}, "config": {}, "normalization": {"mean": 0.1, "std": 0.3}, "epoch": 1},
                           tmp_path / "last.pt")
    before = path.read_bytes()

    def disk_full(obj, file):
        file.write(b"PK\x03\x04 half")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4160 vs 4058")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(LenetError, match=f"the disk holding {tmp_path} is full, so last.pt was not written"):
        save_checkpoint({"epoch": 2}, path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["last.pt"]


# 11. Damaged data files are named, with how to get a good copy.
@pytest.mark.parametrize("damage", ["empty", "wrong magic", "truncated"])
def test_a_damaged_idx_file_is_named_as_corrupt(damage, tmp_path):
    root = make_dataset(tmp_path / "data", n_train=300, n_test=50)
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = images.read_bytes()
    images.write_bytes({"empty": b"", "wrong magic": b"\x00\x00\x09\x99" + data[4:],
                        "truncated": data[:len(data) // 2]}[damage])
    config = Config(data_dir=str(root), val_size=50, runs_dir=str(tmp_path / "runs"), run_name="r", device="cpu")
    with pytest.raises(LenetError, match=f"{images} is corrupt .*: delete it so that it is downloaded again"):
        fit(config, verbose=False)
    assert not (tmp_path / "runs").exists()  # a failed start leaves no folder behind


# 12 and 15. A runs folder that is a file, and batches larger than the data.
@pytest.mark.slow
def test_runs_dir_that_is_a_file_and_a_batch_larger_than_the_data_are_one_line(tiny_mnist, tmp_path):
    (tmp_path / "a_file").write_text("")
    common = ["--data-dir", tiny_mnist, "--val-size", 200, "--epochs", 1, "--device", "cpu"]
    one_error_line(run_module("lenet.cli.train", *common, "--runs-dir", tmp_path / "a_file"), "is a file, not a folder")
    one_error_line(run_module("lenet.cli.train", *common, "--runs-dir", tmp_path / "runs", "--batch-size", 5000),
                   "--batch-size 5000 is larger than the training split (1,000 images)", "use at most 1000")
    one_error_line(run_module("lenet.cli.train", *common, "--batch-size", 1000000),
                   "--batch-size must be between 1 and 65536")


# 13. Crafted checkpoints are refused in one sentence.
def crafted(tmp_path: Path, tiny_checkpoint: Path, **changes) -> Path:
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    for key, value in changes.items():
        if key == "weights":
            checkpoint["model"]["fc1.weight"][0, 0] = value
        elif value is None:
            checkpoint.pop(key, None)
        else:
            checkpoint[key] = value
    path = tmp_path / "crafted.pt"
    torch.save(checkpoint, path)
    return path


@pytest.mark.parametrize("changes, message", [
    ({"normalization": {"std": 0.3}}, "normalization lacks the mean or std"),
    ({"normalization": {"mean": 0.1, "std": 0.0}}, "not a finite mean and a positive std"),
    ({"normalization": {"mean": float("nan"), "std": 0.3}}, "not a finite mean and a positive std"),
    ({"classes": ["a", "b"]}, "names 2 classes but its network has 10 outputs"),
    ({"classes": "0123456789"}, "classes are not a list of names"),
    ({"weights": float("nan")}, "weights hold NaN or infinite values"),
    ({"temperature": -1.0}, "temperature -1.0 is not a positive number"),
])
def test_crafted_checkpoints_are_refused_with_what_is_wrong(changes, message, tiny_checkpoint, tmp_path):
    with pytest.raises(LenetError, match=message):
        load_model(crafted(tmp_path, tiny_checkpoint, **changes))


def test_a_checkpoint_without_class_names_predicts_digits(tiny_checkpoint, tmp_path):
    predictor = load_model(crafted(tmp_path, tiny_checkpoint, classes=None))
    assert predictor.classes == [str(d) for d in range(10)]


# 14. What is not a regular file is refused with the right reason, and never hangs.
@pytest.mark.slow
def test_a_fifo_checkpoint_or_image_is_refused_without_hanging(tiny_checkpoint, tmp_path):
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    one_error_line(run_module("lenet.cli.predict", drawn_seven(tmp_path / "7.png"), "--checkpoint", fifo, timeout=120),
                   "is a FIFO (named pipe), not a checkpoint")
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    result = run_module("lenet.cli.predict", fifo.with_suffix(".png"), "/dev/zero", loop, "--checkpoint",
                        tiny_checkpoint, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    os.mkfifo(fifo.with_suffix(".png"))
    result = run_module("lenet.cli.predict", fifo.with_suffix(".png"), "/dev/zero", loop, "--checkpoint",
                        tiny_checkpoint, timeout=120)
    assert "pipe.png is a FIFO (named pipe)" in result.stderr
    assert "/dev/zero is a device" in result.stderr
    assert "loop.png is a symbolic link loop" in result.stderr


# 16. A run that never saved a checkpoint does not block its name, and Ctrl+C then does not advise --resume.
def test_a_run_folder_without_checkpoints_is_reused(tiny_config):
    folder = Path(tiny_config.runs_dir) / tiny_config.run_name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(tiny_config.to_dict()))  # left by a failed start
    assert fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)["history"]


@pytest.mark.slow
def test_ctrl_c_before_the_first_checkpoint_leaves_nothing_and_does_not_advise_resume(tiny_mnist, tmp_path):
    script = ("import sys, lenet.train as t, lenet.cli.train as command\n"
              "def interrupt(*args, **kwargs): raise KeyboardInterrupt\n"
              "t.train_one_epoch = interrupt\n"
              f"sys.exit(command.main(['--data-dir', {str(tiny_mnist)!r}, '--val-size', '200', '--runs-dir', "
              f"{str(tmp_path / 'runs')!r}, '--run-name', 'cut', '--device', 'cpu']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 130 and "Traceback" not in result.stderr
    assert "interrupted before the first checkpoint" in result.stderr and "--resume" not in result.stderr
    assert not (tmp_path / "runs" / "cut").exists()


# 17. --resume applies the flags that can change and refuses the others.
def test_resume_refuses_flags_that_would_make_another_run(tiny_config, capsys):
    fit(dataclasses.replace(tiny_config, epochs=2), verbose=False)
    run_dir = Path(tiny_config.runs_dir) / tiny_config.run_name
    assert train_main(["--resume", str(run_dir), "--optimizer", "sgd", "--lr", "0.5"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --optimizer, --lr cannot change when a run is continued") and \
        error.count("\n") == 1


def test_a_finished_run_is_extended_by_a_larger_epochs_and_data_can_move(tiny_config, tmp_path):
    config = dataclasses.replace(tiny_config, epochs=2, patience=0)
    fit(config, verbose=False)
    run_dir = Path(config.runs_dir) / config.run_name
    with pytest.raises(LenetError, match="has already finished at epoch 2: extend it with a larger --epochs"):
        fit(resume=run_dir, verbose=False)
    moved = tmp_path / "moved-data"
    Path(config.data_dir).rename(moved)
    try:
        result = fit(resume=run_dir, changes={"epochs": 4, "data_dir": str(moved)}, verbose=False)
    finally:
        moved.rename(config.data_dir)
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3, 4]
    assert json.loads((run_dir / "config.json").read_text())["epochs"] == 4


def test_resume_from_an_earlier_epoch_file_when_last_pt_is_damaged(tiny_config, capsys):
    config = dataclasses.replace(tiny_config, epochs=3, patience=0, schedule="constant")
    with pytest.raises(Interrupted):
        fit(config, callbacks=[StopAfter(2)], verbose=False)
    checkpoints = Path(config.runs_dir) / config.run_name / "checkpoints"
    last = checkpoints / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])  # truncated, as by a crash outside lenet's atomic writes
    assert train_main(["--resume", str(Path(config.runs_dir) / config.run_name)]) == 2
    error = capsys.readouterr().err
    assert "is corrupt or truncated: epoch_01.pt, epoch_02.pt in" in error
    assert f"--resume {checkpoints / 'epoch_02.pt'}" in error
    result = fit(resume=checkpoints / "epoch_02.pt", verbose=False)
    assert [r["epoch"] for r in result["history"]] == [1, 2, 3]


# 18. Messages that point to the right fix.
def test_a_run_folder_given_as_checkpoint_points_to_its_best_pt(tiny_checkpoint, tmp_path):
    run_dir = tiny_checkpoint.parent.parent
    with pytest.raises(LenetError, match=f"is a folder, not a checkpoint: pass {run_dir / 'checkpoints' / 'best.pt'}"):
        load_checkpoint(run_dir)
    png = drawn_seven(tmp_path / "digit.png")
    with pytest.raises(LenetError, match="is not a checkpoint \\(not a file torch.save wrote\\)"):
        load_checkpoint(png)
