"""The non-digits of notebooks 09 and 10 ship with the package: every learner reads the same characters, offline,
with their origin, licence and citation beside them."""

from __future__ import annotations

import fnmatch
import tomllib
from collections import Counter
from pathlib import Path

import numpy as np

from lenet.notebook.non_digits import FOLDER, character_files, handwritten_characters

ROOT = Path(__file__).resolve().parents[1]


def alphabet(name: str) -> str:
    return name.rsplit("_character", 1)[0]


def test_the_shipped_characters_are_there_a_few_hundred_across_five_alphabets():
    files = character_files()
    assert 250 <= len(files) <= 350, len(files)
    counts = Counter(alphabet(path.name) for path in files)
    assert set(counts) == {"Balinese", "Early_Aramaic", "Greek", "Korean", "Latin"}, counts
    assert min(counts.values()) >= 40, counts
    assert sum(path.stat().st_size for path in files) < 500_000  # small enough to live in git


def test_handwritten_characters_returns_the_shipped_set_whatever_the_data_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path))  # an empty data folder: nothing is read from it
    characters = handwritten_characters()
    assert [name for name, _ in characters] == [path.name for path in character_files()]
    name, image = characters[0]
    assert image.mode == "L" and image.size == (105, 105)
    pixels = np.asarray(image)
    assert (pixels > 127).mean() > 0.5, "dark strokes on light paper"
    assert list(tmp_path.iterdir()) == [], "nothing was downloaded"


def test_a_count_picks_that_many_of_them_the_same_for_the_same_seed():
    names = {path.name for path in character_files()}
    picked = [name for name, _ in handwritten_characters(20, seed=3)]
    assert len(picked) == 20 and set(picked) <= names and picked == sorted(picked)
    assert picked == [name for name, _ in handwritten_characters(20, seed=3)]
    assert picked != [name for name, _ in handwritten_characters(20, seed=4)]


def test_the_attribution_file_gives_the_origin_the_mit_licence_and_the_citation():
    text = (FOLDER / "README.md").read_text(encoding="utf-8")
    for needed in ("brendenlake/omniglot", "MIT License", "Copyright (c) 2015 Brenden Lake",
                   "Permission is hereby granted", "Lake", "Science", "350(6266)"):
        assert needed in text, needed


def test_the_package_data_of_pyproject_installs_every_shipped_file():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "lenet.notebook.omniglot" in setuptools["packages"]
    patterns = setuptools["package-data"]["lenet.notebook.omniglot"]
    shipped = [path.name for path in FOLDER.iterdir()]
    assert "README.md" in shipped
    missed = [name for name in shipped if not any(fnmatch.fnmatch(name, pattern) for pattern in patterns)]
    assert not missed, f"pyproject.toml's package-data leaves out {missed}"
