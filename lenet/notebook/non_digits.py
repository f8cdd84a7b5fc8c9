"""Characters that are not digits, for notebook 09: handwritten letters of other alphabets, drawn with a mouse.

They come from the Omniglot data set (Lake et al., 2015, MIT licence): a folder of its images if the data folder
holds one (`not_digits_dev/`, as on the machine that recorded the notebook's outputs), else the 20 alphabets of
its evaluation set, which torchvision downloads into the data folder. Either way the network never trained on
them, and none of them is a digit, though some are drawn exactly like one (a Latin O, a letter like a 7).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from lenet.inference.images import image_files_in

FOLDER = "not_digits_dev"  # a folder of non-digit images inside the data folder, used when it is there


def handwritten_characters(data_dir: str | os.PathLike, count: int = 1000, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """`count` (name, grayscale image) pairs of handwritten non-digits, picked at random by `seed`, dark on light."""
    folder = Path(data_dir) / FOLDER
    if folder.is_dir():
        files = image_files_in(folder)
        pick = np.random.default_rng(seed).permutation(len(files))[:count]
        return [(files[i].name, Image.open(files[i]).convert("L")) for i in sorted(pick)]
    from torchvision.datasets import Omniglot  # the evaluation alphabets: 13,180 images, about 9 MB
    dataset = Omniglot(str(data_dir), background=False, download=True)
    pick = np.random.default_rng(seed).permutation(len(dataset))[:count]
    return [(f"omniglot-{i}", dataset[int(i)][0]) for i in sorted(pick)]
