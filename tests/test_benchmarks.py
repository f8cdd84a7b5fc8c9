"""The benchmark scripts' own inputs: recipes are typed Config overrides; a bad one is one clear line."""

import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.recipes import parse_recipe

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_recipe_overrides_are_typed_like_the_config_fields():
    assert parse_recipe("batch_size=256 lr=0.01 max_shift=1 channels_last=false optimizer=sgd") == {
        "batch_size": 256, "lr": 0.01, "max_shift": 1, "channels_last": False, "optimizer": "sgd"}
    assert parse_recipe("") == {}


@pytest.mark.parametrize("recipe", ["batchsize=256", "lr=", "lr"])
@pytest.mark.slow
def test_a_bad_recipe_is_one_line_naming_it(recipe):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "recipes.py"), recipe], capture_output=True, text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [f"error: {recipe!r} is not FIELD=VALUE with a Config field "
                                                  "(e.g. batch_size=256)."]


@pytest.mark.slow
def test_a_badly_typed_value_is_one_line():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "recipes.py"), "epochs=four"], capture_output=True,
                            text=True)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == ["error: 'epochs=four': epochs must be an integer."]


@pytest.mark.slow
def test_the_detector_benchmark_names_a_missing_labels_file_in_one_line(tiny_checkpoint, tmp_path):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "not_a_digit.py"), "--checkpoint", str(tiny_checkpoint),
                             "--non-digits", str(tmp_path), "--digits", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'labels.json'} does not exist: pass a folder "
                                                  "with a labels.json."]
