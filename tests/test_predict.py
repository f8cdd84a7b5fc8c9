import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from helpers import drawn_seven, huge_png, real_mnist_dir, run_module
from lenet.checkpoint import save_checkpoint
from lenet.config import Config
from lenet.errors import LenetError
from lenet.model import LeNet5
from lenet.runs import default_checkpoint
from lenet.cli.predict import main
from lenet.inference.predict import Prediction, Predictor, load_model, predict

NO_MODEL = "no completed training run in runs/: train one with `make train` (or lenet-train), or pass --checkpoint"
JSON_KEYS = {"file", "outcome", "familiarity", "evidence", "prediction", "probability", "probabilities", "error"}


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory) -> tuple[list[str], dict[str, str]]:
    """Arguments mixing good images and every kind of bad input, with the message each bad one must get."""
    folder = tmp_path_factory.mktemp("inputs")
    good_first = drawn_seven(folder / "good_first.png")
    (folder / "empty_folder").mkdir()
    (folder / "empty_folder" / "readme.txt").write_text("no images here\n")
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("this is not an image\n")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (200, 200), np.uint8))
    noise.save(folder / "whole.png")
    (folder / "truncated.png").write_bytes((folder / "whole.png").read_bytes()[:3000])
    Image.new("RGB", (100, 100), "white").save(folder / "blank.png")
    (folder / "huge.png").write_bytes(huge_png())
    seven = Image.open(good_first)
    seven.save(folder / "animated.gif", save_all=True, append_images=[Image.new("RGB", seven.size, "white")])
    good_last = drawn_seven(folder / "good_last.jpg", size=200)
    expected_errors = {
        "missing.png": "does not exist: check the path",
        "empty_folder": "holds no images",
        "zero.png": "is empty (0 bytes)",
        "text.png": "is not an image Pillow can read",
        "truncated.png": "is truncated or corrupt",
        "blank.png": "no ink found: draw or photograph a digit",
        "huge.png": "is too large",
    }
    arguments = [str(good_first)] + [str(folder / name) for name in expected_errors] + \
                [str(folder / "animated.gif"), str(good_last)]
    return arguments, expected_errors


@pytest.fixture(scope="module")
def cli_with_bad_inputs(bad_inputs, tiny_checkpoint) -> subprocess.CompletedProcess:
    return run_module("lenet.cli.predict", *bad_inputs[0], "--checkpoint", tiny_checkpoint)


@pytest.fixture(scope="module")
def cli_json_with_bad_inputs(bad_inputs, tiny_checkpoint) -> subprocess.CompletedProcess:
    return run_module("lenet.cli.predict", *bad_inputs[0], "--checkpoint", tiny_checkpoint, "--json")


@pytest.mark.slow
def test_cli_predicts_a_drawn_digit_end_to_end(tmp_path, tiny_checkpoint):
    image = drawn_seven(tmp_path / "seven.png")
    result = run_module("lenet.cli.predict", image, "--checkpoint", tiny_checkpoint)
    assert result.returncode == 0, result.stderr
    line, = result.stdout.splitlines()
    assert line.startswith(f"{image}: ") and "top 3: " in line
    assert line.count("%") == 4 or "unsure" in line  # the digit's probability and three others


@pytest.mark.slow
def test_bad_inputs_fail_with_exit_code_2_and_no_traceback(cli_with_bad_inputs):
    assert cli_with_bad_inputs.returncode == 2
    assert "Traceback" not in cli_with_bad_inputs.stdout + cli_with_bad_inputs.stderr


@pytest.mark.parametrize("name", ["missing.png", "empty_folder", "zero.png", "text.png", "truncated.png",
                                  "blank.png", "huge.png"])
@pytest.mark.slow
def test_each_bad_input_gets_one_clear_line_naming_it(cli_with_bad_inputs, bad_inputs, name):
    message = bad_inputs[1][name]
    lines = [line for line in cli_with_bad_inputs.stderr.splitlines() if name in line]
    assert len(lines) == 1, cli_with_bad_inputs.stderr
    assert lines[0].startswith("error: ") and message in lines[0]


@pytest.mark.slow
def test_good_inputs_are_still_predicted_beside_bad_ones(cli_with_bad_inputs):
    predicted = cli_with_bad_inputs.stdout.splitlines()
    assert [line.split(": ")[0].rsplit("/", 1)[-1] for line in predicted] == \
        ["good_first.png", "animated.gif", "good_last.jpg"]  # the GIF's first frame is a digit
    assert all("top 3: " in line for line in predicted)


@pytest.mark.slow
def test_json_output_has_one_object_per_input_with_the_schema(cli_json_with_bad_inputs, bad_inputs):
    assert cli_json_with_bad_inputs.returncode == 2
    assert "Traceback" not in cli_json_with_bad_inputs.stderr
    results = json.loads(cli_json_with_bad_inputs.stdout)
    assert [result["file"] for result in results] == bad_inputs[0]
    for result in results:
        assert set(result) == JSON_KEYS
        if result["error"] is None:
            assert result["outcome"] in ("digit", "unsure", "not a digit")
            assert (result["prediction"] in range(10)) == (result["outcome"] == "digit")
            assert result["prediction"] is None or result["prediction"] in range(10)
            assert len(result["probabilities"]) == 10
            assert sum(result["probabilities"]) == pytest.approx(1.0, abs=1e-4)
            assert result["probability"] == pytest.approx(max(result["probabilities"]))
        else:
            assert isinstance(result["error"], str) and result["prediction"] is None and result["outcome"] is None
    failed = {Path(result["file"]).name for result in results if result["error"]}
    assert failed == set(bad_inputs[1])


def test_no_trained_model_says_how_to_get_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no runs/ here
    assert main([str(drawn_seven(tmp_path / "seven.png"))]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"error: {NO_MODEL}.\n"
    assert captured.out == ""


@pytest.mark.slow
def test_checkpoint_carrying_code_is_refused_and_its_code_never_runs(tmp_path):
    marker = tmp_path / "pwned.txt"

    class CreatesAFile:
        def __reduce__(self):
            return open, (str(marker), "w")

    evil = tmp_path / "evil.pt"
    torch.save({"model": CreatesAFile(), "config": {}, "normalization": {"mean": 0.1, "std": 0.3}}, evil)
    assert not marker.exists()
    result = run_module("lenet.cli.predict", drawn_seven(tmp_path / "seven.png"), "--checkpoint", evil)
    assert result.returncode == 2
    assert result.stderr.startswith("error: refused to load") and "Traceback" not in result.stderr
    assert not marker.exists()
    with pytest.raises(LenetError, match="refused to load"):
        load_model(evil)
    assert not marker.exists()


def test_corrupt_checkpoint_is_a_clear_error(tmp_path, capsys):
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert main([str(drawn_seven(tmp_path / "seven.png")), "--checkpoint", str(corrupt)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {corrupt} is corrupt or truncated")


def test_default_model_is_the_newest_completed_run_never_a_notebook_run(tmp_path):
    def run(folder, finished_at, completed=True):
        checkpoints = folder / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / "best.pt").write_bytes(b"weights")
        os.utime(checkpoints / "best.pt", (finished_at + 500, finished_at + 500))
        if completed:
            (folder / "metrics.json").write_text("{}")
            os.utime(folder / "metrics.json", (finished_at, finished_at))

    run(tmp_path / "older", 1_000_000)
    run(tmp_path / "newer", 2_000_000)
    run(tmp_path / "still-training", 3_000_000, completed=False)  # has best.pt but no metrics.json yet
    run(tmp_path / "notebooks" / "lr-0.1", 4_000_000)  # a notebook's run, one level down
    run(tmp_path / "notebooks", 5_000_000)  # even a completed run named like the notebooks' folder
    assert default_checkpoint(tmp_path) == tmp_path / "newer" / "checkpoints" / "best.pt"
    with pytest.raises(LenetError, match="no completed training run in .*empty/: train one with `make train`"):
        default_checkpoint(tmp_path / "empty")
    (tmp_path / "a_file").write_text("")
    with pytest.raises(LenetError, match="is a file, not a folder"):
        default_checkpoint(tmp_path / "a_file")


def test_predict_returns_probabilities_and_what_the_model_saw(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    assert model.temperature > 0 and model.summary().startswith("tiny/checkpoints/best.pt (epoch ")
    assert "% test accuracy" in model.summary() and str(tmp_path) not in model.summary()
    assert model.checkpoint_path == tiny_checkpoint and model.classes == [str(d) for d in range(10)]
    predictions = predict(model, [drawn_seven(tmp_path / "a.png"), Image.open(tmp_path / "a.png")])
    assert len(predictions) == 2
    first, second = predictions
    assert isinstance(first, Prediction) and len(first.probabilities) == 10
    assert sum(first.probabilities) == pytest.approx(1.0, abs=1e-5)
    assert first.probability == max(first.probabilities)
    assert np.asarray(first.image).shape == (28, 28)
    assert first.probabilities == pytest.approx(second.probabilities)  # a path and a PIL image agree
    alone, = predict(model, tmp_path / "a.png")  # a single image needs no list
    assert alone.probabilities == pytest.approx(first.probabilities, abs=1e-6)


def test_batched_predictions_match_one_at_a_time(tiny_checkpoint, tmp_path):
    model = load_model(tiny_checkpoint)
    images = [drawn_seven(tmp_path / f"{size}.png", size) for size in (120, 200, 280)]
    together = predict(model, images)
    alone = [predict(model, [image])[0] for image in images]
    for a, b in zip(together, alone):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-6)


def uniform_predictor(tmp_path, **stored) -> Predictor:
    """A model whose last layer is zero, so it gives every class 10%; `stored` adds fields to its checkpoint."""
    model = LeNet5()
    torch.nn.init.zeros_(model.fc3.weight)
    path = save_checkpoint({"model": model.state_dict(), "config": Config().to_dict(), "epoch": 1,
                            "normalization": {"mean": 0.13, "std": 0.31}, "classes": [str(d) for d in range(10)],
                            **stored}, tmp_path / "uniform.pt")
    return load_model(path)


FAMILIAR = torch.eye(400)[:8].half()  # eight unit vectors: a drawn 7's features are similar to few of them


def refusal(familiarity_below: float, evidence_below: float = -100.0, familiar=FAMILIAR) -> dict:
    """The `refusal` entry of a checkpoint (`lenet.checkpoint.with_calibration` writes it)."""
    return {"refusal": {"familiar": familiar, "familiarity_below": familiarity_below,
                        "evidence_below": evidence_below}}


def test_an_image_below_the_stored_familiarity_threshold_is_not_a_digit(tmp_path, capsys):
    # A cosine similarity is at most 1: a threshold of 2 refuses every image.
    model = uniform_predictor(tmp_path, **refusal(2.0))
    assert model.refusal.familiarity_below == 2.0 and model.refusal.familiar.shape == (8, 400)
    assert model.refusal.familiar.dtype == torch.float32  # ready to compare with
    prediction, = predict(model, [drawn_seven(tmp_path / "seven.png")])
    assert prediction.outcome == "not a digit" and prediction.label is None
    assert -1 <= prediction.familiarity < 2.0
    assert main([str(tmp_path / "seven.png"), "--checkpoint", str(model.checkpoint_path)]) == 0
    assert "seven.png: not a digit (best guess" in capsys.readouterr().out
    assert main([str(tmp_path / "seven.png"), "--checkpoint", str(model.checkpoint_path), "--json"]) == 0
    answer, = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "not a digit" and answer["prediction"] is None
    assert answer["familiarity"] == pytest.approx(prediction.familiarity, abs=1e-3)


def test_the_three_outcomes_follow_the_refusal_then_the_top_probability(tmp_path):
    never = uniform_predictor(tmp_path)  # a checkpoint without a refusal (an epoch's) never refuses
    prediction, = predict(never, [drawn_seven(tmp_path / "seven.png")])
    assert never.refusal is None and prediction.outcome == "unsure" and prediction.label is None
    assert prediction.familiarity is None and prediction.evidence == pytest.approx(math.log(10), abs=1e-4)
    low = uniform_predictor(tmp_path, **refusal(-2.0))
    prediction, = predict(low, [drawn_seven(tmp_path / "seven.png")])
    assert prediction.outcome == "unsure"  # familiar enough, but no digit at 50% or more


def test_an_image_below_the_stored_evidence_threshold_is_not_a_digit_however_familiar(tmp_path, capsys):
    # The uniform model's ten logits are equal, so its evidence logsumexp(logits / T) is log(10) for every image.
    strict = uniform_predictor(tmp_path, **refusal(-2.0, 3.0))
    assert strict.refusal.evidence_below == 3.0
    prediction, = predict(strict, [drawn_seven(tmp_path / "seven.png")])
    assert prediction.evidence == pytest.approx(math.log(10), abs=1e-4)
    assert prediction.outcome == "not a digit" and prediction.label is None
    assert main([str(tmp_path / "seven.png"), "--checkpoint", str(strict.checkpoint_path), "--json"]) == 0
    answer, = json.loads(capsys.readouterr().out)
    assert answer["outcome"] == "not a digit" and answer["evidence"] == pytest.approx(math.log(10), abs=1e-4)
    lenient = uniform_predictor(tmp_path, **refusal(-2.0, 2.0))
    assert predict(lenient, [tmp_path / "seven.png"])[0].outcome == "unsure"  # above both thresholds
    unfamiliar = uniform_predictor(tmp_path, **refusal(2.0, 2.0))
    assert predict(unfamiliar, [tmp_path / "seven.png"])[0].outcome == "not a digit"  # either threshold refuses


@pytest.mark.parametrize("key", ["familiarity_below", "evidence_below"])
@pytest.mark.parametrize("value", ["high", float("nan"), float("inf"), [1.0]])
def test_a_damaged_refusal_threshold_is_refused_in_one_sentence(tmp_path, key, value):
    stored = refusal(0.5)
    stored["refusal"][key] = value
    with pytest.raises(LenetError, match="refusal threshold .* is not a finite number"):
        uniform_predictor(tmp_path, **stored)


@pytest.mark.parametrize("refusal_entry", [{"familiarity_below": 0.5}, {"familiar": FAMILIAR, "evidence_below": 1.0},
                                           "strict", [0.5, 1.0]])
def test_an_incomplete_refusal_is_refused_in_one_sentence(tmp_path, refusal_entry):
    with pytest.raises(LenetError, match="its refusal is not a dict of evidence_below, familiar, familiarity_below"):
        uniform_predictor(tmp_path, refusal=refusal_entry)


@pytest.mark.parametrize("value", [torch.eye(400)[:3, :84], torch.ones(400), torch.full((2, 400), float("nan")),
                                   torch.zeros(0, 400), torch.ones(2, 400, dtype=torch.int64), "features"])
def test_damaged_familiar_features_are_refused_in_one_sentence(tmp_path, value):
    with pytest.raises(LenetError, match=r"familiar features are not a finite \(N, 400\) tensor"):
        uniform_predictor(tmp_path, **refusal(0.5, familiar=value))


def test_a_low_top_probability_is_reported_as_unsure(tmp_path, capsys):
    model = uniform_predictor(tmp_path)
    prediction, = predict(model, [drawn_seven(tmp_path / "seven.png")])
    assert prediction.label is None and prediction.outcome == "unsure"
    assert prediction.probability == pytest.approx(0.1)
    assert main([str(tmp_path / "seven.png"), "--checkpoint", str(model.checkpoint_path)]) == 0
    out = capsys.readouterr().out
    assert "unsure (best guess" in out and "10.0%" in out


def user_like_digit(pixels: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """An MNIST digit as a user would supply it: 220 px, thick black strokes on white, off-centre."""
    digit = Image.fromarray(pixels).resize((220, 220), Image.Resampling.BICUBIC).filter(ImageFilter.MaxFilter(7))
    canvas = Image.new("L", (300, 300), 0)
    canvas.paste(digit, tuple(int(v) for v in rng.integers(0, 81, 2)))
    return canvas  # white ink on black; callers invert it or use it as alpha


@pytest.fixture(scope="module")
def user_digits(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """100 real MNIST test digits as RGBA PNGs (black ink, transparent paper) and 100 as JPEGs."""
    root = real_mnist_dir()
    if root is None:
        pytest.skip("LENET_DATA_DIR does not hold the official MNIST files")
    from lenet.data import load_torchvision_dataset
    test_set = load_torchvision_dataset(data_dir=root, train=False, download=False)
    folder, labels, rng = tmp_path_factory.mktemp("user-digits"), {}, np.random.default_rng(0)
    for index in range(200):
        ink = user_like_digit(test_set.data[index].numpy(), rng)
        if index % 2:
            Image.eval(ink, lambda v: 255 - v).save(folder / f"{index:03d}.jpg", quality=90)
            name = f"{index:03d}.jpg"
        else:
            rgba = Image.new("RGBA", ink.size, (0, 0, 0, 0))
            rgba.putalpha(ink)
            rgba.save(folder / f"{index:03d}.png")
            name = f"{index:03d}.png"
        labels[name] = int(test_set.targets[index])
    return folder, labels


def test_cli_reads_users_digits_as_accurately_as_mnist(user_digits, mnist_checkpoint):
    folder, labels = user_digits
    result = run_module("lenet.cli.predict", folder, "--checkpoint", mnist_checkpoint, "--json")
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout)
    assert len(results) == 200
    correct = sum(r["prediction"] == labels[Path(r["file"]).name] for r in results)
    unsure = sum(r["prediction"] is None for r in results)
    accuracy = correct / len(results)
    print(f"\naccuracy on 200 user-like MNIST test digits (100 RGBA PNG, 100 JPEG): {accuracy:.1%}, "
          f"{unsure} unsure")
    assert accuracy >= 0.95
