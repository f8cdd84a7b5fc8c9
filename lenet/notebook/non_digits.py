"""Characters that are not digits, for notebooks 09 and 10: handwritten letters of other alphabets, drawn with a mouse.

They ship with the package (`omniglot/`, 300 images, 60 from each of five alphabets of the Omniglot data set,
Lake et al., 2015, MIT licence; its README gives their origin, the licence and the citation), so every learner reads
the same pictures, with no download. The network never trained on them, and none of them is a digit, though some are
drawn exactly like one (a Latin O, a letter like a 7).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from lenet.inference.images import image_files_in

FOLDER = Path(__file__).parent / "omniglot"  # the shipped characters, <alphabet>_<character>_<drawing>.png


def character_files() -> list[Path]:
    """The shipped characters' image files, sorted by name."""
    return image_files_in(FOLDER)


def handwritten_characters(count: int | None = None, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """(file name, grayscale image) pairs of the shipped non-digits, dark on light, in name order: all of them, or
    `count` picked at random by `seed`."""
    files = character_files()
    if count is not None and count < len(files):
        files = [files[i] for i in sorted(np.random.default_rng(seed).permutation(len(files))[:count])]
    return [(path.name, Image.open(path).convert("L")) for path in files]
