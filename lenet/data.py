"""MNIST and Fashion-MNIST: finding the files, the train/validation/test split, and batches.

torchvision reads and downloads the IDX files (it knows the mirrors and checksums). Training then
uses a fast path: the images are decoded once into one normalized tensor and batches are served by
shuffled index, instead of a per-sample PIL transform. `torchvision_loader` keeps the classic
`Dataset` + `DataLoader` pipeline for teaching and for the benchmark's baseline.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator
from urllib.error import URLError

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from lenet.errors import LenetError

DATASETS = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}
CLASSES = {
    "mnist": [str(digit) for digit in range(10)],
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
# Fixed so that every seed and every optimizer is compared on the same validation images.
SPLIT_SEED = 20240601


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`--data-dir` if given, else $LENET_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("LENET_DATA_DIR") or "data")


def load_torchvision_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None,
                             train: bool = True, download: bool = True, transform=None) -> datasets.MNIST:
    """The torchvision dataset, downloaded if missing; one clear LenetError if that is impossible."""
    if name not in DATASETS:
        raise LenetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}.")
    cls, root = DATASETS[name], resolve_data_dir(data_dir)
    raw = root / cls.__name__ / "raw"
    try:
        # torchvision reports each failed mirror on stdout; the sentence below says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            return cls(str(root), train=train, download=download, transform=transform)
    except (RuntimeError, URLError, OSError, AssertionError) as error:
        files = ", ".join(f"{part}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
                          for part in ("train", "t10k") for kind in ("images", "labels"))
        raise LenetError(
            f"{name} not found in {raw} and it could not be downloaded ({str(error).splitlines()[0]}): "
            f"place the four IDX files ({files}, optionally .gz) there, or point --data-dir or "
            f"LENET_DATA_DIR at the folder that holds {cls.__name__}/raw."
        ) from None


@dataclass
class TensorBatches:
    """A whole split held as one normalized tensor, served in (optionally shuffled) batches by index."""

    images: torch.Tensor  # (N, 1, 28, 28) float32, normalized
    labels: torch.Tensor  # (N,) int64
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0  # set before iterating; the shuffle order depends only on (seed, epoch)
    max_shift: int = 0  # augmentation: shift each image by up to this many pixels (0: off)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        # A generator per epoch makes the order reproducible and a resumed run identical.
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.shuffle:
            order = torch.randperm(n, generator=generator).to(self.labels.device)
        for start in range(0, n, self.batch_size):
            if self.shuffle:
                index = order[start:start + self.batch_size]
                images, labels = self.images[index], self.labels[index]
            else:
                images, labels = self.images[start:start + self.batch_size], self.labels[start:start + self.batch_size]
            if self.max_shift:
                images = random_shift(images, self.max_shift, generator)
            yield images, labels

    def to(self, device: torch.device | str, memory_format=torch.contiguous_format) -> "TensorBatches":
        """The same batches with both tensors moved to `device`."""
        return dataclasses.replace(self, images=self.images.to(device, memory_format=memory_format),
                                   labels=self.labels.to(device))


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of a (B, 1, H, W) batch by its own random offset of up to max_shift pixels."""
    batch, _, height, width = images.shape
    background = images.amin().item()  # the normalized value of a black pixel
    padded = F.pad(images.reshape(batch, height, width), (max_shift,) * 4, value=background)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, batch), generator=generator).to(images.device)
    # Every HxW window of the padded image, as a view: (B, 2*max_shift+1, 2*max_shift+1, H, W).
    windows = padded.unfold(1, height, 1).unfold(2, width, 1)
    return windows[torch.arange(batch, device=images.device), dy, dx].unsqueeze(1)


@dataclass
class Splits:
    """Train, validation and test batches plus the normalization constants computed on train."""

    train: TensorBatches
    val: TensorBatches
    test: TensorBatches
    mean: float
    std: float
    classes: list[str]


def split_indices(n: int, val_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded (train, val) partition of range(n)."""
    if not 0 < val_size < n:
        raise LenetError(f"--val-size must be between 1 and {n - 1} for a training set of {n} images, "
                         f"got {val_size}.")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    return order[val_size:], order[:val_size]


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28), scaled to [0, 1] then standardized."""
    return ((images.float() / 255.0 - mean) / std).unsqueeze(1)


def load_splits(name: str = "mnist", data_dir: str | os.PathLike | None = None, val_size: int = 5000,
                batch_size: int = 64, eval_batch_size: int = 1000, seed: int = 0, max_shift: int = 0) -> Splits:
    """Decode the dataset once and return normalized train/val/test batches (test is never shuffled)."""
    train_set = load_torchvision_dataset(name, data_dir, train=True)
    test_set = load_torchvision_dataset(name, data_dir, train=False)
    train_index, val_index = split_indices(len(train_set.targets), val_size)
    train_pixels = train_set.data[train_index].float() / 255.0
    # The constants come from the training split only: validation and test stay unseen.
    mean, std = train_pixels.mean().item(), train_pixels.std().item()

    def batches(images, labels, size, shuffle=False):
        return TensorBatches(normalize(images, mean, std), labels.long(), size, shuffle, seed)

    return Splits(
        train=dataclasses.replace(batches(train_set.data[train_index], train_set.targets[train_index], batch_size,
                                          shuffle=True), max_shift=max_shift),
        val=batches(train_set.data[val_index], train_set.targets[val_index], eval_batch_size),
        test=batches(test_set.data, test_set.targets, eval_batch_size),
        mean=mean, std=std, classes=CLASSES[name],
    )


def torchvision_loader(name: str = "mnist", data_dir: str | os.PathLike | None = None, train: bool = True,
                       batch_size: int = 64, shuffle: bool = True, mean: float = 0.1307, std: float = 0.3081,
                       num_workers: int = 0) -> DataLoader:
    """The classic pipeline: per-sample ToTensor + Normalize through a DataLoader."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = load_torchvision_dataset(name, data_dir, train=train, transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)
