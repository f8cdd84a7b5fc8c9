import dataclasses
import subprocess
import sys

import pytest

from helpers import parse_config
from lenet.config import Config, ConfigError
from lenet.errors import LenetError


def test_defaults_are_valid_and_frozen():
    config = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 1.0  # type: ignore[misc]
    assert dataclasses.replace(config, epochs=2).epochs == 2


@pytest.mark.parametrize("field, value, flag", [
    ("lr", 0.0, "--lr"), ("lr", -1.0, "--lr"), ("optimizer", "rmsprop", "--optimizer"),
    ("batch_size", 0, "--batch-size"), ("epochs", 0, "--epochs"), ("schedule", "cosine", "--schedule"),
    ("device", "tpu", "--device"), ("momentum", 1.5, "--momentum"), ("dataset", "cifar", "--dataset"),
    ("patience", -1, "--patience"), ("run_name", "a/b", "--run-name"), ("lr", float("inf"), "--lr"),
    ("lr", float("nan"), "--lr"), ("momentum", float("nan"), "--momentum"), ("batch_size", 10**6, "--batch-size"),
    ("rotate", 90.0, "--rotate"), ("thin", 0.9, "--thin"),
])
def test_invalid_values_name_the_field_in_python_and_the_flag_on_the_command_line(field, value, flag):
    with pytest.raises(LenetError) as raised:
        Config(**{field: value})
    assert str(raised.value).startswith(f"{field} ") and "--" not in str(raised.value)
    assert isinstance(raised.value, ConfigError) and raised.value.as_flag().startswith(f"{flag} ")


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "a\\b", "c:", "", " padded", "notebooks"])
def test_run_names_must_be_one_plain_folder(name):
    with pytest.raises(LenetError, match="run_name"):
        Config(run_name=name)
    assert Config(run_name="sgd-baseline_2.v1").run_name == "sgd-baseline_2.v1"


def test_a_saved_config_loads_ignoring_fields_this_version_no_longer_has():
    saved = {**Config(epochs=5).to_dict(), "a_field_removed_since": 3}
    assert Config.from_dict(saved) == Config(epochs=5)


def test_cli_maps_dashed_flags_onto_the_config():
    config = parse_config(["--epochs", "10", "--optimizer", "sgd", "--lr", "0.05", "--run-name", "sgd-baseline",
                           "--channels-last"])
    assert (config.epochs, config.optimizer, config.lr, config.run_name, config.channels_last) == \
        (10, "sgd", 0.05, "sgd-baseline", True)
    assert config.batch_size == Config().batch_size


@pytest.mark.parametrize("argv, message", [
    (["--lr", "-1"], "--lr must be > 0"),
    (["--optimizer", "rmsprop"], "--optimizer must be one of adam, sgd"),
    (["--batch-size", "0"], "--batch-size must be between 1 and"),
    (["--no-such-flag", "1"], "unrecognized arguments: --no-such-flag"),
    (["--epochs", "ten"], "--epochs: invalid int value"),
    (["--lr", "inf"], "--lr must be a finite number"),
    (["--run-name", ".."], "--run-name must be a plain folder name"),
])
@pytest.mark.slow
def test_cli_rejects_bad_flags_with_one_clear_message(argv, message):
    result = subprocess.run([sys.executable, "-m", "lenet.cli.train", *argv], capture_output=True, text=True)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_help_states_every_default():
    result = subprocess.run([sys.executable, "-m", "lenet.cli.train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for field in dataclasses.fields(Config):
        assert "--" + field.name.replace("_", "-") in result.stdout
    assert "(default: adam)" in result.stdout


def test_config_round_trips_through_a_dict():
    config = Config(lr=0.01, run_name="x")
    assert Config.from_dict(config.to_dict()) == config


def test_preset_applies_before_the_flags_typed():
    config = parse_config(["--preset", "fast", "--epochs", "7"])
    assert config.channels_last and config.epochs == 7 and config.batch_size == 256


@pytest.mark.slow
def test_unknown_preset_is_refused():
    result = subprocess.run([sys.executable, "-m", "lenet.cli.train", "--preset", "turbo"], capture_output=True,
                            text=True)
    assert result.returncode == 2 and "invalid choice: 'turbo'" in result.stderr
