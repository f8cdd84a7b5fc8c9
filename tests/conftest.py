"""Shared fixtures: tiny MNIST-format datasets written as real IDX files, read through torchvision."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import lenet  # noqa: F401, I001 -- first: it shortens OpenMP's spin before torch loads, so the suite shares the cores
import torch

from helpers import real_mnist_dir, synthetic_digits
from lenet.config import Config


def write_idx(path: Path, tensor: torch.Tensor) -> None:
    """Write a uint8 tensor in the IDX format MNIST uses (big-endian dims after a magic number)."""
    header = struct.pack(">I", 0x0800 + tensor.dim()) + b"".join(struct.pack(">I", s) for s in tensor.shape)
    path.write_bytes(header + tensor.to(torch.uint8).contiguous().numpy().tobytes())


def make_dataset(root: Path, folder: str = "MNIST", n_train: int = 1200, n_test: int = 300,
                 random_labels: bool = False) -> Path:
    """Write train and t10k IDX files under root/folder/raw and return root."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for part, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = synthetic_digits(n, seed, random_labels)
        write_idx(raw / f"{part}-images-idx3-ubyte", images)
        write_idx(raw / f"{part}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory) -> Path:
    """A data dir holding a 1,200 + 300 image MNIST-format dataset."""
    return make_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture
def tiny_config(tiny_mnist, tmp_path) -> Config:
    """A config that trains quickly on the tiny dataset, writing runs under tmp_path."""
    return Config(data_dir=str(tiny_mnist), val_size=200, batch_size=32, epochs=3, runs_dir=str(tmp_path / "runs"),
                  run_name="tiny", device="cpu", log_every=5)


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_mnist, tmp_path_factory) -> Path:
    """best.pt of a 2-epoch run on the tiny synthetic dataset (any machine, a few seconds)."""
    from lenet.train import fit
    runs = tmp_path_factory.mktemp("tiny-runs")
    fit(Config(data_dir=str(tiny_mnist), val_size=200, batch_size=32, epochs=2, runs_dir=str(runs),
               run_name="tiny", device="cpu"), verbose=False)
    return runs / "tiny" / "checkpoints" / "best.pt"


@pytest.fixture(scope="session")
def mnist_checkpoint(tmp_path_factory) -> Path:
    """best.pt of a short real MNIST run (about 98% test accuracy); skips without $LENET_DATA_DIR MNIST."""
    root = real_mnist_dir()
    if root is None:
        pytest.skip("LENET_DATA_DIR does not hold the official MNIST files")
    from lenet.train import fit
    runs = tmp_path_factory.mktemp("mnist-runs")
    fit(Config(data_dir=str(root), epochs=3, runs_dir=str(runs), run_name="mnist", device="cpu"), verbose=False)
    return runs / "mnist" / "checkpoints" / "best.pt"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that needs the real-MNIST model (`mnist_checkpoint` trains one, about a minute) is in the slow and
    real_mnist tiers, wherever it is; the other tiers are marked where the tests are written."""
    for item in items:
        if "mnist_checkpoint" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.real_mnist)
            item.add_marker(pytest.mark.slow)
