"""Run folders: one process per run, a killed run never blocks its name, and the default-model rule."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lenet import runs
from lenet.cli.train import main as train_main
from lenet.errors import LenetError
from lenet.train import fit

HOLD = ("import sys, time; from pathlib import Path; from lenet.runs import claim\n"
        "with claim(Path(sys.argv[1])):\n"
        "    print('held', flush=True); time.sleep(600)\n")


def holder(run_dir: Path) -> subprocess.Popen:
    """A process that claims `run_dir` and holds it until killed; returns once it holds it."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"  # blocks until the claim is made (or the process died)
    return process


def test_a_second_claim_is_refused_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "runs" / "twin"
    with runs.claim(run_dir):
        with pytest.raises(LenetError, match=rf"{run_dir} is being trained by process {os.getpid()}: wait"):
            with runs.claim(run_dir):
                pass
    with runs.claim(run_dir):  # released: free again
        pass
    assert not runs.lock_path(run_dir).exists()


def test_a_failed_start_leaves_no_runs_folder(tmp_path):
    run_dir = tmp_path / "runs" / "r"
    with pytest.raises(RuntimeError):
        with runs.claim(run_dir):
            raise RuntimeError("data missing")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_run_held_by_another_process_refuses_training_resume_and_overwrite(tiny_config, capsys):
    run_dir = Path(tiny_config.runs_dir) / tiny_config.run_name
    fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)
    process = holder(run_dir)
    try:
        for argv in (["--run-name", "tiny", "--overwrite"], ["--resume", str(run_dir), "--epochs", "2"]):
            common = ["--data-dir", tiny_config.data_dir, "--val-size", "200", "--runs-dir", tiny_config.runs_dir]
            assert train_main(argv if argv[0] == "--resume" else common + argv) == 2
            error = capsys.readouterr().err
            assert error.count("\n") == 1 and f"is being trained by process {process.pid}" in error
    finally:
        process.kill()
        process.wait()
    assert fit(resume=run_dir, changes={"epochs": 2}, verbose=False)["history"][-1]["epoch"] == 2


@pytest.mark.slow
def test_a_killed_run_does_not_block_its_name(tiny_config):
    run_dir = Path(tiny_config.runs_dir) / tiny_config.run_name
    process = holder(run_dir)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert runs.lock_path(run_dir).exists()  # left behind by the killed process, and harmless
    assert fit(dataclasses.replace(tiny_config, epochs=1), verbose=False)["history"]


@pytest.mark.slow
def test_two_trainings_of_one_name_started_together_train_once(tiny_mnist, tmp_path):
    command = [sys.executable, "-m", "lenet.cli.train", "--data-dir", str(tiny_mnist), "--val-size", "200",
               "--epochs", "2", "--runs-dir", str(tmp_path / "runs"), "--run-name", "twin", "--device", "cpu"]
    processes = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = [(process.wait(timeout=300), *process.communicate()) for process in processes]
    assert sorted(code for code, _, _ in results) == [0, 2]
    (refused_err,) = [err for code, _, err in results if code == 2]
    assert refused_err.count("\n") == 1 and "is being trained by process" in refused_err
    run_dir = tmp_path / "runs" / "twin"
    writers = {path.name.split(".")[-2] for path in run_dir.glob("events.out.tfevents.*")}  # ...<host>.<pid>.<n>
    assert len(writers) == 1  # TensorBoard logs of one process only
    predict = subprocess.run([sys.executable, "-m", "lenet.cli.predict", "--checkpoint",
                              str(runs.checkpoint_path(run_dir, runs.BEST)), str(tmp_path)],
                             capture_output=True, text=True, timeout=120)
    assert "Traceback" not in predict.stderr


def test_resume_needs_a_run_folder(tmp_path):
    with pytest.raises(LenetError, match="is not a run folder or one of its checkpoints"):
        runs.resume_point(tmp_path / "nowhere" / "run")
    assert not (tmp_path / "nowhere").exists()

