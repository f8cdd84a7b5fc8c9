import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

import lenet.inference.predict as predict_module
import lenet.inference.score as score_module
from lenet.errors import LenetError
from lenet.inference.predict import Predictor
from lenet.refusal import Refusal
from lenet.cli.score import main
from lenet.inference.score import labelled_images, score


class ShapeReader(torch.nn.Module):
    """A stand-in network with known answers: a tall shape is a 1, a wide one a 4, anything else unsure. Its
    features say which it saw: a one in the first (tall), second (wide) or third (other) of 400 places."""

    def features(self, batch: torch.Tensor) -> torch.Tensor:  # (B, 1, 28, 28) -> (B, 400)
        features = torch.zeros(batch.shape[0], 400)
        for index, image in enumerate(batch[:, 0] > 0.5):
            height, width = int(image.any(dim=1).sum()), int(image.any(dim=0).sum())
            features[index, 0 if height > 2 * width else 1 if width > 2 * height else 2] = 1.0
        return features

    def head(self, features: torch.Tensor) -> torch.Tensor:  # all zeros for "other": 10% each, below UNSURE_BELOW
        logits = torch.zeros(features.shape[0], 10)
        logits[:, 1], logits[:, 4] = 10.0 * features[:, 0], 10.0 * features[:, 1]
        return logits

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(batch))


def reader(familiarity_below: float | None = None) -> Predictor:
    """The shape reader; with `familiarity_below` 0.5, a square (no familiar feature) is "not a digit"."""
    familiar = torch.eye(400)[[0] * 5 + [1] * 5]  # tall and wide shapes
    refusal = None if familiarity_below is None else Refusal(familiar, familiarity_below, evidence_below=-100.0)
    return Predictor(network=ShapeReader(), mean=0.0, std=1.0, classes=[str(digit) for digit in range(10)],
                     device=torch.device("cpu"), checkpoint_path=Path("runs/shapes/checkpoints/best.pt"),
                     refusal=refusal)


def drawing(shape: str) -> Image.Image:
    """A black-on-white drawing of a tall bar, a wide bar or a square ring."""
    image = Image.new("L", (120, 120), 255)
    box = {"tall": [55, 10, 64, 110], "wide": [10, 55, 110, 64], "square": [20, 20, 100, 100]}[shape]
    ImageDraw.Draw(image).rectangle(box, outline=0, fill=None if shape == "square" else 0, width=9)
    return image


# (folder, file, shape): read as 1 if tall, 4 if wide, unsure if square.
SAMPLES = [("1", "a.png", "tall"), ("1", "b.png", "wide"), ("7", "c.png", "tall"), ("7", "d.png", "square"),
           ("4", "e.png", "wide")]


def digit_folders(root: Path) -> Path:
    """SAMPLES sorted into subfolders named for their digit: 2 of 5 read right, 2 wrong, 1 unsure."""
    for folder, name, shape in SAMPLES:
        (root / folder).mkdir(parents=True, exist_ok=True)
        drawing(shape).save(root / folder / name)
    return root


def labels_json(root: Path, labels: dict | None = None) -> Path:
    """SAMPLES flat in `root`, labelled by root/labels.json."""
    root.mkdir(parents=True, exist_ok=True)
    for folder, name, shape in SAMPLES:
        drawing(shape).save(root / name)
    (root / "labels.json").write_text(json.dumps(labels or {name: int(folder) for folder, name, _ in SAMPLES}))
    return root


@pytest.fixture
def shapes(monkeypatch) -> Predictor:
    """The commands load the shape reader instead of a trained checkpoint."""
    predictor = reader()
    monkeypatch.setattr(predict_module, "load_model", lambda *args, **kwargs: predictor)
    return predictor


def test_the_score_counts_accuracy_per_digit_confusions_and_unsure(tmp_path):
    result = score(reader(), labelled_images(digit_folders(tmp_path)))
    assert (len(result.scored), result.correct, result.wrong, result.unsure) == (5, 2, 2, 1)
    assert result.accuracy == pytest.approx(0.4)
    assert result.per_digit() == {1: (1, 2), 4: (1, 1), 7: (0, 2)}
    assert result.confusions() == [(1, 4, 1), (7, 1, 1)]
    assert [item.file.name for item in result.misread] == ["b.png", "c.png", "d.png"]
    assert result.errors == []


def mixed_folder(root: Path) -> Path:
    """Digits in 1/ and 7/, and not-digits in none/: a square (refused) and a tall bar (read as a 1)."""
    for folder, name, shape in [("1", "a.png", "tall"), ("7", "d.png", "square"), ("none", "ring.png", "square"),
                                ("none", "bar.png", "tall")]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        drawing(shape).save(root / folder / name)
    return root


def test_images_that_are_not_digits_are_right_when_refused(tmp_path):
    items = labelled_images(mixed_folder(tmp_path))
    assert [(path.name, label) for path, label in items] == \
        [("a.png", 1), ("d.png", 7), ("bar.png", None), ("ring.png", None)]
    result = score(reader(familiarity_below=0.5), items)
    assert (result.correct, result.wrong, result.unsure, result.refused) == (2, 1, 0, 2)
    assert result.non_digits == (1, 2) and result.per_digit() == {1: (1, 1), 7: (0, 1)}
    assert result.confusions() == [(None, 1, 1)]
    assert [item.file.name for item in result.misread] == ["d.png", "bar.png"]
    without = score(reader(), items)  # a model without a threshold never refuses: the square is only unsure
    assert (without.correct, without.unsure, without.refused) == (1, 2, 0)


def test_the_cli_counts_each_outcome_for_a_mixed_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(predict_module, "load_model", lambda *args, **kwargs: reader(familiarity_below=0.5))
    folder = labels_json(tmp_path / "flat", {"a.png": 1, "d.png": None, "c.png": "none", "e.png": 4})
    assert main([str(folder), "--no-sheet"]) == 0
    out = capsys.readouterr().out
    assert "accuracy 75.0% (3/4): 1 wrong, 0 unsure, 1 not a digit" in out
    assert 'not digits: 50% answered "not a digit" (1/2), 0 unsure, 1 read as a digit' in out
    assert "confusions (label -> read as): not a digit -> 1 x1" in out
    assert "c.png: not a digit read as 1 (100%)" in out
    assert main([str(folder), "--no-sheet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["outcomes"] == {"digits": {"digit": 2, "unsure": 0, "not a digit": 0},
                                  "not_digits": {"digit": 1, "unsure": 0, "not a digit": 1}}
    assert result["not_a_digit"] == 1 and result["confusions"] == [{"label": None, "read_as": 1, "count": 1}]


def test_digit_folders_and_a_labels_file_give_the_same_score(tmp_path):
    from_folders = score(reader(), labelled_images(digit_folders(tmp_path / "sorted")))
    from_labels = score(reader(), labelled_images(labels_json(tmp_path / "flat")))
    assert from_labels.correct == from_folders.correct and from_labels.confusions() == from_folders.confusions()


def test_a_labels_file_elsewhere_is_used_with_names_relative_to_the_folder(tmp_path):
    folder = labels_json(tmp_path / "images")
    elsewhere = tmp_path / "my-labels.json"
    elsewhere.write_text(json.dumps({"a.png": "1", "e.png": 4}))  # a digit may be written as a string
    items = labelled_images(folder, elsewhere)
    assert items == [(folder / "a.png", 1), (folder / "e.png", 4)]


def test_the_cli_prints_the_score_and_writes_a_contact_sheet_of_the_misread(tmp_path, shapes, capsys):
    sheet = tmp_path / "out" / "misread.png"
    assert main([str(digit_folders(tmp_path / "digits")), "--sheet", str(sheet)]) == 0
    out, err = capsys.readouterr()
    assert "accuracy 40.0% (2/5): 2 wrong, 1 unsure, 0 not a digit" in out
    assert "per digit: 1 50% (1/2)  4 100% (1/1)  7 0% (0/2)" in out
    assert "confusions (label -> read as): 1 -> 4 x1, 7 -> 1 x1" in out
    assert "b.png: 1 read as 4 (100%)" in out and "d.png: 7: unsure (best guess 0, 10%)" in out
    assert f"contact sheet of the 3 misread images: {sheet}" in out
    assert err.startswith("using shapes/checkpoints/best.pt")
    with Image.open(sheet) as image:  # three pairs side by side: the image and what the model saw
        assert image.format == "PNG" and image.width > 3 * 2 * score_module.TILE > image.height
        pixels = np.asarray(image.convert("L"))
    # The second picture of the first pair is the model's 28x28 input: a wide white bar on black.
    seen = pixels[12:12 + score_module.TILE, 12 + score_module.TILE + 4:12 + 2 * score_module.TILE + 4]
    assert seen[0, 0] == 0 and seen.max() == 255


def test_the_cli_json_holds_every_count_and_misread_image(tmp_path, shapes, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([str(labels_json(tmp_path / "flat")), "--json", "--no-sheet"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {key: result[key] for key in ("total", "correct", "wrong", "unsure", "accuracy")} == \
        {"total": 5, "correct": 2, "wrong": 2, "unsure": 1, "accuracy": 0.4}
    assert result["per_digit"]["7"] == {"correct": 0, "total": 2, "accuracy": 0.0}
    assert result["confusions"] == [{"label": 1, "read_as": 4, "count": 1}, {"label": 7, "read_as": 1, "count": 1}]
    assert [(Path(item["file"]).name, item["read_as"]) for item in result["misread"]] == \
        [("b.png", 4), ("c.png", 1), ("d.png", None)]
    assert result["errors"] == [] and result["sheet"] is None
    assert not (tmp_path / "misread.png").exists()  # --no-sheet: not even the default


def test_no_sheet_is_written_when_nothing_is_misread(tmp_path, shapes, capsys):
    folder = labels_json(tmp_path / "flat", {"a.png": 1, "e.png": 4})
    sheet = tmp_path / "misread.png"
    assert main([str(folder), "--sheet", str(sheet)]) == 0
    assert "accuracy 100.0% (2/2): 0 wrong, 0 unsure, 0 not a digit" in capsys.readouterr().out
    assert not sheet.exists()


def test_an_unreadable_image_is_one_error_line_and_the_rest_is_scored(tmp_path, shapes, capsys):
    folder = digit_folders(tmp_path / "digits")
    (folder / "7" / "notes.png").write_text("not an image\n")
    assert main([str(folder), "--no-sheet"]) == 2
    out, err = capsys.readouterr()
    assert "accuracy 40.0% (2/5)" in out
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {folder / '7' / 'notes.png'} is not an image Pillow can read: "
                      "use PNG, JPEG, BMP, GIF, WebP or TIFF."]


@pytest.mark.parametrize("case, message", [
    ("missing folder", "does not exist: pass the folder of labelled images."),
    ("file as folder", "is not a folder: pass the folder of labelled images."),
    ("no labels", "has no labels.json and no digit-named subfolders (0/ to 9/, none/)"),
    ("empty digit folders", "hold no images"),
    ("invalid json", "is not valid JSON (Expecting ',' delimiter at line 1"),
    ("json list", "holds a JSON list, not an object"),
    ("label 10", "labels 'a.png' as 10: a label must be a digit 0-9, or null for an image that is not a digit."),
    ("label true", "labels 'a.png' as true: a label must be a digit 0-9, or null for an image that is not a digit."),
    ("label word", "labels 'a.png' as \"seven\": a label must be a digit 0-9, or null for an image that is not a digit."),
    ("empty labels", "lists no images: there is nothing to score."),
    ("missing labels file", "does not exist: pass --labels the JSON file of labels."),
])
def test_a_bad_folder_or_labels_file_is_one_line_and_exit_2(tmp_path, shapes, capsys, case, message):
    folder, extra = tmp_path / "images", []
    folder.mkdir()
    labels = folder / "labels.json"
    if case == "missing folder":
        folder = tmp_path / "absent"
    elif case == "file as folder":
        folder = tmp_path / "file.png"
        drawing("tall").save(folder)
    elif case == "empty digit folders":
        (folder / "3").mkdir()
    elif case == "invalid json":
        labels.write_text('{"a.png": 1 "b.png": 2}')
    elif case == "json list":
        labels.write_text('["a.png"]')
    elif case.startswith("label "):
        labels.write_text(json.dumps({"a.png": {"10": 10, "true": True, "word": "seven"}[case.split()[1]]}))
    elif case == "empty labels":
        labels.write_text("{}")
    elif case == "missing labels file":
        extra = ["--labels", str(tmp_path / "absent.json")]
    assert main([str(folder), *extra]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err


def test_labelled_images_raises_a_lenet_error_for_a_library_caller(tmp_path):
    with pytest.raises(LenetError, match="does not exist"):
        labelled_images(tmp_path / "absent")


def test_a_real_checkpoint_scores_a_generated_folder_end_to_end(tmp_path, tiny_checkpoint, capsys):
    folder = digit_folders(tmp_path / "digits")
    assert main([str(folder), "--checkpoint", str(tiny_checkpoint), "--json",
                 "--sheet", str(tmp_path / "sheet.png")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total"] == 5 and result["correct"] + result["wrong"] + result["unsure"] + result["not_a_digit"] == 5
    assert (result["sheet"] is not None) == (result["correct"] < 5)
