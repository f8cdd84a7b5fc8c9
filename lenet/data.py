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
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F

from lenet.errors import LenetError

if TYPE_CHECKING:  # torchvision is imported when data is loaded: `lenet-train --help` stays fast
    from torch.utils.data import DataLoader
    from torchvision.datasets import MNIST

# The torchvision dataset class of each dataset name (torchvision also names the folder after it).
DATASET_FOLDERS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
IDX_FILES = {"train-images-idx3-ubyte": (60_000, 28, 28), "train-labels-idx1-ubyte": (60_000,),
             "t10k-images-idx3-ubyte": (10_000, 28, 28), "t10k-labels-idx1-ubyte": (10_000,)}
DIGITS = tuple(str(digit) for digit in range(10))  # MNIST's class names, and a checkpoint's that names none
CLASSES = {
    "mnist": list(DIGITS),
    "fashion-mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}
# MNIST's geometry: each digit's longer side was scaled to DIGIT_SIZE px, then centred by mass at (CENTRE, CENTRE)
# of a FIELD_SIZE x FIELD_SIZE field. People's images (lenet.inference.preprocess) and drawn non-digits
# (lenet.refusal.non_digits) are placed the same way.
FIELD_SIZE, DIGIT_SIZE, CENTRE = 28, 20, 14.0
# Fixed so that every seed and every optimizer is compared on the same validation images.
SPLIT_SEED = 20240601


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """`--data-dir` if given, else $LENET_DATA_DIR, else ./data."""
    return Path(data_dir or os.environ.get("LENET_DATA_DIR") or "data")


def load_torchvision_dataset(name: str = "mnist", data_dir: str | os.PathLike | None = None,
                             train: bool = True, download: bool = True, transform=None) -> "MNIST":
    """The torchvision dataset, downloaded if missing; one clear LenetError if that is impossible."""
    if name not in DATASET_FOLDERS:
        raise LenetError(f"unknown dataset {name!r}: choose one of {', '.join(DATASET_FOLDERS)}.")
    from torchvision import datasets

    root = resolve_data_dir(data_dir)
    raw = root / DATASET_FOLDERS[name] / "raw"
    check_idx_files(raw)  # a damaged file is named before torchvision fails on it in its own words
    try:
        # torchvision reports each failed mirror on stdout; the sentence below says it all.
        with contextlib.redirect_stdout(io.StringIO()):
            return getattr(datasets, DATASET_FOLDERS[name])(str(root), train=train, download=download,
                                                            transform=transform)
    except Exception as error:  # RuntimeError, URLError, OSError... from a failed download or a bad .gz
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise LenetError(
            f"{name} not found in {raw} and it could not be downloaded ({reason}): place the four IDX files "
            f"({', '.join(IDX_FILES)}, optionally .gz) there, or point --data-dir or LENET_DATA_DIR at the "
            f"folder that holds {DATASET_FOLDERS[name]}/raw."
        ) from None


def check_idx_files(raw: Path) -> None:
    """LenetError naming any decompressed IDX file in `raw` whose header or size is wrong."""
    for name, shape in IDX_FILES.items():
        path = raw / name
        if not path.is_file():
            continue
        with open(path, "rb") as file:
            header = file.read(4 + 4 * len(shape))
        expected_magic = 0x0800 + len(shape)
        problem = None
        if len(header) < 4 + 4 * len(shape):
            problem = f"{len(header)} bytes, too short for an IDX header"
        else:
            magic, *dims = struct.unpack(f">I{len(shape)}I", header)
            size = len(header) + math.prod(dims)
            if magic != expected_magic or tuple(dims[1:]) != shape[1:]:
                problem = f"its header is not that of an IDX file of shape (N, {', '.join(map(str, shape[1:]))})" \
                    if len(shape) > 1 else "its header is not that of an IDX label file"
            elif path.stat().st_size != size:
                problem = f"{path.stat().st_size:,} bytes where its header promises {size:,}: it is truncated"
        if problem:
            raise LenetError(f"{path} is corrupt ({problem}): delete it so that it is downloaded again, or "
                             "copy a good one from the official MNIST files.")


@dataclass(frozen=True)
class Augmentation:
    """Random changes to each training image, batched on the device (see `augment`)."""

    max_shift: int = 0  # pixels
    rotate: float = 0.0  # degrees, either way
    scale: float = 0.0  # fraction, up or down
    shear: float = 0.0  # horizontal shear factor, either way
    thicken: float = 0.0  # probability that an image's strokes grow by a pixel
    thin: float = 0.0  # probability that they shrink by a pixel

    @property
    def warps(self) -> bool:
        """Whether any affine warp beyond integer shifts is on."""
        return bool(self.rotate or self.scale or self.shear)


@dataclass
class TensorBatches:
    """A whole split held as one normalized tensor, served in (optionally shuffled) batches by index."""

    images: torch.Tensor  # (N, 1, 28, 28) float32, normalized
    labels: torch.Tensor  # (N,) int64
    batch_size: int
    shuffle: bool = False
    seed: int = 0
    epoch: int = 0  # set before iterating; the order and augmentation depend only on (seed, epoch)
    augmentation: Augmentation | None = None  # training only

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
            if self.augmentation is not None:
                images = augment(images, self.augmentation, generator)
            yield images, labels

    def to(self, device: torch.device | str, memory_format=torch.contiguous_format) -> "TensorBatches":
        """The same batches with both tensors moved to `device`."""
        return dataclasses.replace(self, images=self.images.to(device, memory_format=memory_format),
                                   labels=self.labels.to(device))


def augment(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """A (B, 1, H, W) batch with each image's strokes thickened or thinned, then warped, each by its own draw.

    Real pens are thinner and thicker than MNIST's, so this is what makes people's digits read well.
    All random numbers come from `generator`, so a seeded epoch is the same batch for batch.
    """
    if augmentation.thicken or augmentation.thin:
        draw = torch.rand(images.shape[0], generator=generator).to(images.device).view(-1, 1, 1, 1)
        images = torch.where(draw < augmentation.thicken, grow_strokes(images),
                             torch.where(draw >= 1 - augmentation.thin, -grow_strokes(-images), images))
    if augmentation.warps:
        return random_affine(images, augmentation, generator)
    if augmentation.max_shift:
        return random_shift(images, augmentation.max_shift, generator)
    return images


def grow_strokes(images: torch.Tensor) -> torch.Tensor:
    """Grey-level dilation by a 3x3 square: every pixel becomes the maximum of its neighbourhood.

    White strokes on black grow by a pixel each way; `-grow_strokes(-x)` shrinks them (erosion). Done as
    the maximum of shifted views, rows then columns: max_pool2d(x, 3, stride=1) gives the same values
    but is over ten times slower on a CPU at this size.
    """
    padded = F.pad(images, (1, 1, 1, 1), mode="replicate")
    rows = torch.maximum(torch.maximum(padded[..., :-2, :], padded[..., 1:-1, :]), padded[..., 2:, :])
    return torch.maximum(torch.maximum(rows[..., :-2], rows[..., 1:-1]), rows[..., 2:])


def random_affine(images: torch.Tensor, augmentation: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """Rotate, scale, shear and shift each image of a (B, 1, H, W) batch by its own random amounts."""
    batch, _, height, width = images.shape
    u = (torch.rand(5, batch, generator=generator) * 2 - 1).to(images.device)  # uniform in [-1, 1)
    angle = u[0] * math.radians(augmentation.rotate)
    zoom = 1 + u[1] * augmentation.scale
    shear = u[2] * augmentation.shear
    cos, sin = angle.cos() / zoom, angle.sin() / zoom
    # theta maps each output pixel to where it samples the input, in normalized coordinates (-1..1):
    # the inverse of "shear, rotate, zoom, shift". (B, 2, 3)
    theta = torch.stack([cos, sin - shear * cos, -u[3] * 2 * augmentation.max_shift / width,
                         -sin, cos + shear * sin, -u[4] * 2 * augmentation.max_shift / height], 1).view(batch, 2, 3)
    grid = affine_grid(theta.to(images.dtype), height, width)
    background = images.amin()  # the normalized value of a black pixel; grid_sample pads with zeros
    warped = F.grid_sample(images - background, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return warped + background


def affine_grid(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """F.affine_grid(theta, (B, 1, H, W), align_corners=False) as one matrix product (a batch of tiny
    matrix products is several times slower on a CPU). (B, H, W, 2)"""
    xs = (torch.arange(width, device=theta.device, dtype=theta.dtype) * 2 + 1) / width - 1
    ys = (torch.arange(height, device=theta.device, dtype=theta.dtype) * 2 + 1) / height - 1
    x, y = torch.meshgrid(xs, ys, indexing="xy")
    base = torch.stack([x, y, torch.ones_like(x)], -1).view(height * width, 3)  # pixel centres, homogeneous
    points = base @ theta.permute(2, 0, 1).reshape(3, -1)  # (H*W, B*2)
    return points.view(height, width, -1, 2).permute(2, 0, 1, 3)


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

    def to(self, device: torch.device | str, memory_format=torch.contiguous_format) -> "Splits":
        """The same splits with every tensor on `device`."""
        return dataclasses.replace(self, **{name: getattr(self, name).to(device, memory_format)
                                            for name in ("train", "val", "test")})


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
                batch_size: int = 64, eval_batch_size: int = 1000, seed: int = 0,
                augmentation: Augmentation | None = None) -> Splits:
    """Decode the dataset once and return normalized train/val/test batches (test is never shuffled)."""
    train_set = load_torchvision_dataset(name, data_dir, train=True)
    test_set = load_torchvision_dataset(name, data_dir, train=False)
    train_index, val_index = split_indices(len(train_set.targets), val_size)
    if batch_size > len(train_index):
        raise LenetError(f"--batch-size {batch_size} is larger than the training split ({len(train_index):,} "
                         f"images), which would make one step an epoch: use at most {len(train_index)}.")
    train_pixels = train_set.data[train_index].float() / 255.0
    # The constants come from the training split only: validation and test stay unseen.
    mean, std = train_pixels.mean().item(), train_pixels.std().item()

    def batches(images, labels, size, shuffle=False):
        return TensorBatches(normalize(images, mean, std), labels.long(), size, shuffle, seed)

    return Splits(
        train=dataclasses.replace(batches(train_set.data[train_index], train_set.targets[train_index], batch_size,
                                          shuffle=True), augmentation=augmentation),
        val=batches(train_set.data[val_index], train_set.targets[val_index], eval_batch_size),
        test=batches(test_set.data, test_set.targets, eval_batch_size),
        mean=mean, std=std, classes=CLASSES[name],
    )


def torchvision_loader(name: str = "mnist", data_dir: str | os.PathLike | None = None, train: bool = True,
                       batch_size: int = 64, shuffle: bool = True, mean: float = 0.1307, std: float = 0.3081,
                       num_workers: int = 0) -> "DataLoader":
    """The classic pipeline: per-sample ToTensor + Normalize through a DataLoader."""
    from torch.utils.data import DataLoader
    from torchvision import transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    dataset = load_torchvision_dataset(name, data_dir, train=train, transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; an explicit choice that is unavailable is an error."""
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if name == "auto":
        return torch.device(next(d for d in ("cuda", "mps", "cpu") if available[d]))
    if not available.get(name, False):
        raise LenetError(f"--device {name} is not available on this machine: use --device auto or cpu.")
    return torch.device(name)
