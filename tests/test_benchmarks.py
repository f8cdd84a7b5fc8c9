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
@pytest.mark.parametrize("command", [["not_a_digit.py", "--checkpoint"], ["outlier_variants.py", "layers"]])
def test_a_detector_benchmark_names_a_missing_labels_file_in_one_line(tiny_checkpoint, tmp_path, command):
    script, option = command
    result = subprocess.run([sys.executable, str(BENCHMARKS / script), option, str(tiny_checkpoint),
                             "--non-digits", str(tmp_path), "--digits", str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {tmp_path / 'labels.json'} does not exist: pass a folder "
                                                  "with a labels.json."]


@pytest.mark.slow
def test_the_refusal_benchmark_trains_reads_both_folders_and_saves_every_answer(tiny_mnist, tmp_path):
    import json

    import torch
    from PIL import Image

    from helpers import drawn_seven
    from lenet.refusal.non_digits import scribbles

    digits, others = tmp_path / "digits", tmp_path / "others"
    digits.mkdir(), others.mkdir()
    (digits / "labels.json").write_text(json.dumps({"a.png": 7, "b.png": 7}))
    drawn_seven(digits / "a.png"), drawn_seven(digits / "b.png", 200)
    for index, image in enumerate(scribbles(3, torch.Generator().manual_seed(5))):
        Image.fromarray((image.numpy() * 255).astype("uint8")).save(others / f"s{index}.png")
    like = tmp_path / "like.txt"
    like.write_text("# drawn like a digit\n\ns0.png\nnot-in-the-folder.png\n")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_exposure.py"), "--non-digits", str(others),
                             "--digits", str(digits), "--seeds", "0", "--scribbles", "0", "4", "--epochs", "1",
                             "--data-dir", str(tiny_mnist), "--recipe", "val_size=200 batch_size=32",
                             "--digit-like", str(like), "--save", str(tmp_path / "answers.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "1 of the 3 non-digits are drawn like a digit" in result.stdout and "would refuse 66.7%" in result.stdout
    assert "| not drawn like a digit: not a digit |" in result.stdout
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 0 |") or line.startswith("| 4 |")]
    assert len(rows) == 12 and [row.split(" | ")[1] for row in rows[:3]] == ["both", "familiarity", "evidence"]
    assert all("mean of 1" in row for row in rows[6:]) and all(row.count("|") == 10 for row in rows)
    saved = json.loads((tmp_path / "answers.json").read_text())
    assert [run["scribbles"] for run in saved] == [0, 4]
    assert all(len(run["non_digits"]) == 3 and len(run["digits"]) == 2 for run in saved)
    assert [answer["digit_like"] for answer in saved[0]["non_digits"]] == [True, False, False]
    assert all(answer["answers"][detector]["outcome"] in ("digit", "unsure", "not a digit")
               for run in saved for answer in run["non_digits"] for detector in ("both", "familiarity", "evidence"))
    # Each stored threshold is at most its score's alone: together they keep the same 99% of validation digits.
    for run in saved:
        assert run["familiarity_below"] <= run["alone"]["familiarity"] and run["evidence_below"] <= run["alone"]["evidence"]


@pytest.mark.slow
@pytest.mark.parametrize("listed", [None, "other.png\n"])
def test_a_digit_like_list_that_names_none_of_the_non_digits_is_one_line(tmp_path, listed):
    import json

    from helpers import drawn_seven

    (tmp_path / "labels.json").write_text(json.dumps({"a.png": 7}))
    drawn_seven(tmp_path / "a.png")
    like = tmp_path / "like.txt"
    if listed is not None:
        like.write_text(listed)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_exposure.py"), "--non-digits", str(tmp_path),
                             "--digits", str(tmp_path), "--digit-like", str(like)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    expected = (f"error: {like} does not exist: pass a text file of file names, one a line." if listed is None else
                f"error: none of the 1 names in {like} is an image of the --non-digits folder: pass the list made "
                "for that folder.")
    assert result.stderr.strip().splitlines() == [expected]


@pytest.mark.slow
def test_the_outlier_cost_benchmark_times_interleaved_epochs_with_and_without_the_non_digits(tiny_mnist):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_cost.py"), "--rounds", "2", "--data-dir",
                             str(tiny_mnist), "--recipe", "val_size=200 batch_size=32"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "batch 32 digits + 16 non-digits" in lines[0]
    assert len([line for line in lines if line.startswith("  round ")]) == 2
    assert lines[-1].startswith("time per epoch with / without: median ")


@pytest.mark.slow
@pytest.mark.parametrize("arguments, message", [
    (["--rounds", "0"], "--rounds must be at least 1, got 0."),
    (["--recipe", "scribbles=0"], "this recipe shows no non-digits (scribbles=0): there is nothing to measure."),
])
def test_the_outlier_cost_benchmark_refuses_what_it_cannot_measure_in_one_line(tiny_mnist, arguments, message):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_cost.py"), "--data-dir", str(tiny_mnist),
                             *arguments], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: {message}"]


def test_turned_digits_are_mirrored_or_quarter_turned_training_digits_of_classes_that_turn_into_no_digit():
    import torch

    from benchmarks.outlier_variants import TURNABLE, turned_digits
    from lenet.errors import LenetError

    images = torch.rand(40, 1, 28, 28)
    labels = torch.arange(40) % 10
    turned = turned_digits(images, labels, 8, rotate=True, generator=torch.Generator().manual_seed(0))
    assert turned.shape == (8, 1, 28, 28)
    candidates = {"mirrored": images.flip(-1), "left": torch.rot90(images, 1, (-2, -1)),
                  "right": torch.rot90(images, -1, (-2, -1))}
    found = []
    for image in turned:
        [(how, index)] = [(how, int(i)) for how, versions in candidates.items()
                          for i in range(len(images)) if torch.equal(versions[i], image)]
        found.append(how)
        assert int(labels[index]) in TURNABLE
    assert found == ["mirrored"] * 4 + ["left"] * 2 + ["right"] * 2
    mirrored = turned_digits(images, labels, 5, rotate=False, generator=torch.Generator().manual_seed(0))
    assert all(any(torch.equal(image, version) for version in candidates["mirrored"]) for image in mirrored)
    with pytest.raises(LenetError, match="only 24 training digits can be turned, 25 asked: lower --share."):
        turned_digits(images, labels, 25, rotate=True, generator=torch.Generator())


def test_the_elastic_grid_moves_each_image_by_a_smooth_field_of_about_the_pixels_asked():
    import torch

    from benchmarks.outlier_variants import elastic_grid
    from lenet.data import affine_grid

    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).expand(64, 2, 3)
    base = affine_grid(theta, 28, 28)
    moved = elastic_grid(affine_grid, 1.5, 4, torch.Generator().manual_seed(0))(theta, 28, 28)
    pixels = (moved - base) * 14  # normalized units (-1..1 over 28 px) to pixels
    assert 1.0 < float(pixels.std()) < 2.0  # about 1.5 px, as asked
    step = (pixels[:, 1:] - pixels[:, :-1]).abs()  # neighbours move together: a smooth field, not pixel noise
    assert float(step.mean()) < 0.25 * float(pixels.std()) and float(step.max()) < 2.0
    again = elastic_grid(affine_grid, 1.5, 4, torch.Generator().manual_seed(0))(theta, 28, 28)
    assert torch.equal(moved, again)


def a_seven_and_scribbles(folder: Path, count: int, name=lambda index: f"s{index}.png") -> tuple[Path, Path]:
    """Two folders under `folder`: digits/ (one drawn 7 and its labels.json) and others/ (`count` scribbles)."""
    import json

    import torch
    from PIL import Image

    from helpers import drawn_seven
    from lenet.refusal.non_digits import scribbles

    digits, others = folder / "digits", folder / "others"
    digits.mkdir(), others.mkdir()
    (digits / "labels.json").write_text(json.dumps({"a.png": 7}))
    drawn_seven(digits / "a.png")
    for index, image in enumerate(scribbles(count, torch.Generator().manual_seed(5))):
        Image.fromarray((image.numpy() * 255).astype("uint8")).save(others / name(index))
    return digits, others


@pytest.mark.slow
@pytest.mark.parametrize("variant", [["turned", "--share", "0.1", "--rotate"], ["elastic", "--pixels", "1.0"]])
def test_a_variant_trains_as_the_refusal_benchmark_does_and_prints_its_table(tiny_mnist, tmp_path, variant):
    digits, others = a_seven_and_scribbles(tmp_path, 2)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_variants.py"), *variant, "--non-digits",
                             str(others), "--digits", str(digits), "--seeds", "0", "--scribbles", "4", "--epochs", "1",
                             "--data-dir", str(tiny_mnist), "--recipe", "val_size=200 batch_size=32"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 4 |")]
    assert [row.split(" | ")[1] for row in rows] == ["both", "familiarity", "evidence"] * 2
    assert all(row.count("|") == 9 for row in rows)


def test_drawn_characters_split_by_alphabet_into_those_trained_beside_and_those_read(tmp_path):
    from benchmarks.outlier_variants import split_by_alphabet
    from lenet.errors import LenetError

    files = [tmp_path / name for name in ("Greek_character01_01.png", "Greek_character02_01.png",
                                          "Early_Aramaic_character01_01.png", "Latin_character15_03.png")]
    shown, read = split_by_alphabet(files, ["Greek", "Latin"], {"Greek_character02_01.png"})
    assert shown == [files[0], files[3]]  # the digit-like Greek character is not trained beside
    assert read == [files[2]]
    with pytest.raises(LenetError, match="no image of the alphabet 'Korean' in the --non-digits folder: pick among "
                                         "Early_Aramaic, Greek, Latin."):
        split_by_alphabet(files, ["Greek", "Korean"], set())
    with pytest.raises(LenetError, match="every alphabet is in --alphabets, so none is left to read"):
        split_by_alphabet(files, ["Greek", "Latin", "Early_Aramaic"], set())


def test_the_drawn_variant_replaces_a_share_of_the_bank_with_the_drawn_characters(tiny_mnist, tmp_path):
    import torch
    from PIL import Image

    from lenet.refusal import OutlierExposure
    from benchmarks.outlier_variants import drawn_images, with_drawn
    from lenet.config import Config
    from lenet.data import load_splits
    from lenet.refusal.non_digits import scribbles

    files = []
    for index, image in enumerate(scribbles(3, torch.Generator().manual_seed(5))):
        files.append(tmp_path / f"Foo_character01_{index}.png")
        Image.fromarray((image.numpy() * 255).astype("uint8")).save(files[-1])
    Image.new("L", (28, 28), 255).save(tmp_path / "Foo_character02_blank.png")  # blank: skipped
    config = Config(data_dir=str(tiny_mnist), val_size=200, batch_size=32, scribbles=4)
    splits = load_splits(config.dataset, config.data_dir, config.val_size, config.batch_size, seed=0)
    images = drawn_images([*files, tmp_path / "Foo_character02_blank.png"], splits.mean, splits.std)
    assert images.shape == (3, 1, 28, 28)
    drawn = OutlierExposure.for_run(config, splits).bank
    bank = with_drawn(OutlierExposure.for_run, files, 0.25)(config, splits).bank
    assert bank.shape == drawn.shape
    tail = bank[-1024:]  # the last quarter: the three drawn characters, each about a third of the time
    counts = [int((tail == image).flatten(1).all(1).sum()) for image in images]
    assert sum(counts) == 1024 and min(counts) >= 341
    generator = torch.Generator().manual_seed(6000)  # the run's seed, 0: the drawn order, then those kept
    torch.randperm(1024, generator=generator)
    assert torch.equal(bank[:8], drawn[torch.randperm(4096, generator=generator)[:8]])


@pytest.mark.slow
def test_the_drawn_variant_reads_only_the_alphabets_it_did_not_train_beside(tiny_mnist, tmp_path):
    import json

    digits, others = a_seven_and_scribbles(tmp_path, 5, lambda index: f"{'Foo' if index < 2 else 'Bar'}_character01_"
                                                                      f"{index}.png")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_variants.py"), "drawn", "--alphabets", "Foo",
                             "--share", "0.1", "--non-digits", str(others), "--digits", str(digits), "--seeds", "0",
                             "--scribbles", "4", "--epochs", "1", "--data-dir", str(tiny_mnist),
                             "--recipe", "val_size=200 batch_size=32", "--save", str(tmp_path / "saved.json")],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Training beside 2 drawn characters of Foo (10% of the bank); reading the 3 of "
                                    "the other alphabets.")
    rows = [line for line in result.stdout.splitlines() if line.startswith("| 4 |")]
    assert [row.split(" | ")[1] for row in rows] == ["both", "familiarity", "evidence"] * 2
    saved = json.loads((tmp_path / "saved.json").read_text())
    read = sorted(answer["file"] for answer in saved[0]["non_digits"])
    assert read == [f"Bar_character01_{i}.png" for i in (2, 3, 4)]


@pytest.mark.slow
def test_the_layers_variant_reads_a_checkpoint_on_each_layer(tiny_checkpoint, tmp_path):
    digits, others = a_seven_and_scribbles(tmp_path, 3)
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_variants.py"), "layers", str(tiny_checkpoint),
                             "--non-digits", str(others), "--digits", str(digits)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines() if line.startswith(f"| {tiny_checkpoint} |")]
    assert [row[1] for row in rows] == ["conv", "fc1", "fc2", "logits"]
    assert all(row[3].endswith("/1") and row[5].endswith("/1 |") for row in rows)


@pytest.mark.slow
def test_an_ensemble_of_one_model_twice_reads_as_that_model_alone(tiny_checkpoint, tmp_path):
    digits, others = a_seven_and_scribbles(tmp_path, 6)
    (tmp_path / "like.txt").write_text("s0.png\ns1.png\n")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_variants.py"), "ensemble", str(tiny_checkpoint),
                             str(tiny_checkpoint), "--non-digits", str(others), "--digits", str(digits),
                             "--digit-like", str(tmp_path / "like.txt")], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    rows = [line.split(" | ") for line in result.stdout.splitlines()[2:]]
    assert [(row[0], row[1]) for row in rows] == [(f"| {tiny_checkpoint}", "1")] * 2 + [("| ensemble of 2", "1")] + \
        [(f"| {tiny_checkpoint}", "5")] * 2 + [("| ensemble of 2", "5")]
    assert rows[0][2:] == rows[2][2:] and rows[3][2:] == rows[5][2:]  # the mean of one model twice is that model
    assert all(row[4].startswith(("0/1 ", "1/1 ")) for row in rows)


def test_shifted_views_move_the_image_one_pixel_and_fill_in_the_background():
    from types import SimpleNamespace

    import torch

    from benchmarks.outlier_variants import read_scores
    from lenet.model import LeNet5

    seen = []

    class Recorder(LeNet5):
        def features(self, x):
            seen.append(x.clone())
            return super().features(x)

    image = torch.full((1, 1, 28, 28), -1.0)
    image[0, 0, 10, 12] = 3.0
    familiar = torch.nn.functional.normalize(torch.randn(8, 400), dim=1)
    predictor = SimpleNamespace(network=Recorder(), temperature=1.0, mean=0.5, std=0.5,
                                refusal=SimpleNamespace(familiar=familiar))
    familiarity, energy, logits = read_scores(predictor, image, 5)
    assert familiarity.shape == energy.shape == (1,) and logits.shape == (1, 10)
    bright = [tuple(torch.nonzero(view[0, 0] == 3.0)[0].tolist()) for view in seen]
    assert bright == [(10, 12), (11, 12), (9, 12), (10, 13), (10, 11)]
    assert all(float(view.min()) == -1.0 for view in seen)  # the border shifted in is -mean/std = -1


@pytest.mark.parametrize("arguments, message", [
    (["ensemble", "a.pt", "--non-digits", ".", "--digits", "."], "error: an ensemble needs two checkpoints or more"),
    (["turned", "--share", "0"], "error: --share must be in (0, 1], got 0.0"),
    (["drawn", "--alphabets", "Greek", "--share", "1.5"], "error: --share must be in [0, 1], got 1.5"),
    (["drawn", "--share", "0.5"], "error: the following arguments are required: --alphabets"),
    (["elastic", "--pixels", "0"], "error: --pixels must be in (0, 10] and --grid between 2 and 28"),
    (["layers", "missing.pt", "--non-digits", ".", "--digits", ".", "--seeds", "0"],
     "error: unrecognized arguments: --seeds 0"),
])
def test_a_variant_refuses_bad_options_in_one_line(arguments, message):
    result = subprocess.run([sys.executable, str(BENCHMARKS / "outlier_variants.py"), *arguments],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].endswith(message)


def test_the_turned_variant_replaces_a_share_of_the_bank_with_mirrored_training_digits(tiny_mnist):
    import dataclasses

    from lenet.refusal import OutlierExposure
    from benchmarks.outlier_variants import with_turned_digits
    from lenet.config import Config
    from lenet.data import load_splits

    config = Config(data_dir=str(tiny_mnist), val_size=200, batch_size=32, scribbles=4)
    splits = load_splits(config.dataset, config.data_dir, config.val_size, config.batch_size, seed=0)
    drawn = OutlierExposure.for_run(config, splits).bank
    bank = with_turned_digits(OutlierExposure.for_run, 0.125, rotate=False)(config, splits).bank

    def found_in(images, pool):
        return (images[:, None] == pool[None]).flatten(2).all(-1).any(-1)

    assert bank.shape == drawn.shape
    assert found_in(bank[-512:][:32], splits.train.images.flip(-1)).all()  # the last eighth: mirrored digits
    assert found_in(bank[:32], drawn).all() and not found_in(bank[-32:], drawn).any()
    assert with_turned_digits(OutlierExposure.for_run, 0.125, False)(
        dataclasses.replace(config, scribbles=0), splits) is None
