from urllib.error import URLError

import pytest
import torch
from torchvision import datasets

from conftest import make_dataset  # the fixtures' dataset writer
from lenet.data import (Augmentation, TensorBatches, affine_grid, augment, grow_strokes, load_splits,
                        load_torchvision_dataset, random_shift, resolve_data_dir, split_indices)
from lenet.errors import LenetError


def test_reads_idx_files_through_torchvision(tiny_mnist):
    train = load_torchvision_dataset("mnist", tiny_mnist, train=True)
    assert train.data.shape == (1200, 28, 28) and train.data.dtype == torch.uint8
    assert sorted(train.targets.unique().tolist()) == list(range(10))


def test_split_is_disjoint_seeded_and_keeps_test_apart(tiny_mnist):
    splits = load_splits("mnist", tiny_mnist, val_size=200, batch_size=32)
    assert len(splits.train.labels) == 1000 and len(splits.val.labels) == 200 and len(splits.test.labels) == 300
    train_index, val_index = split_indices(1200, 200)
    assert set(train_index.tolist()).isdisjoint(val_index.tolist())
    assert torch.equal(split_indices(1200, 200)[1], val_index)
    assert splits.train.shuffle and not splits.val.shuffle and not splits.test.shuffle


def test_normalization_comes_from_the_training_split(tiny_mnist):
    splits = load_splits("mnist", tiny_mnist, val_size=200)
    assert splits.train.images.shape == (1000, 1, 28, 28)
    assert abs(splits.train.images.mean().item()) < 1e-4
    assert abs(splits.train.images.std().item() - 1) < 1e-3


def test_shuffle_order_depends_only_on_seed_and_epoch():
    batches = TensorBatches(torch.arange(10.0).view(10, 1, 1, 1), torch.arange(10), batch_size=4, shuffle=True)
    first = torch.cat([labels for _, labels in batches])
    assert sorted(first.tolist()) == list(range(10))
    assert torch.equal(first, torch.cat([labels for _, labels in batches]))
    batches.epoch = 1
    assert not torch.equal(first, torch.cat([labels for _, labels in batches]))
    assert len(batches) == 3


def test_fashion_mnist_uses_the_same_path(tmp_path):
    make_dataset(tmp_path, folder="FashionMNIST")
    splits = load_splits("fashion-mnist", tmp_path, val_size=100)
    assert splits.classes[0] == "T-shirt/top" and len(splits.test.labels) == 300


def test_missing_data_says_where_it_looked_and_what_to_do(tmp_path):
    with pytest.raises(LenetError) as error:
        load_torchvision_dataset("mnist", tmp_path / "nowhere", download=False)
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    assert "train-images-idx3-ubyte" in message and "LENET_DATA_DIR" in message


def test_offline_download_failure_is_one_clear_error(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("no network")
    monkeypatch.setattr(datasets.MNIST, "download", offline)
    with pytest.raises(LenetError, match="could not be downloaded"):
        load_torchvision_dataset("mnist", tmp_path)


def test_data_dir_flag_then_environment_then_default(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET_DATA_DIR", str(tmp_path))
    assert resolve_data_dir("elsewhere").name == "elsewhere"
    assert resolve_data_dir(None) == tmp_path
    monkeypatch.delenv("LENET_DATA_DIR")
    assert str(resolve_data_dir(None)) == "data"


def test_val_size_too_large_is_a_clear_error(tiny_mnist):
    with pytest.raises(LenetError, match="--val-size"):
        load_splits("mnist", tiny_mnist, val_size=5000)


@pytest.mark.parametrize("max_shift", [1, 2])
def test_random_shift_moves_each_image_by_its_own_offset_filling_with_black(max_shift):
    torch.manual_seed(0)
    images = torch.rand(300, 1, 28, 28) + 1.0  # every pixel brighter than the black (-1.0) below
    images[:, :, 0, 0] = -1.0  # the batch's black level, which the shift pads with
    shifted = random_shift(images, max_shift, torch.Generator().manual_seed(3))
    assert shifted.shape == images.shape
    padded = torch.nn.functional.pad(images, (max_shift,) * 4, value=-1.0)
    offsets = set()
    for image, result in zip(padded, shifted):
        matches = [(dy, dx) for dy in range(2 * max_shift + 1) for dx in range(2 * max_shift + 1)
                   if torch.equal(image[:, dy:dy + 28, dx:dx + 28], result)]
        assert len(matches) == 1  # exactly one window of the padded image, i.e. a pure translation
        offsets.add(matches[0])
    assert len(offsets) == (2 * max_shift + 1) ** 2  # every offset occurs across 300 images
    assert torch.equal(shifted, random_shift(images, max_shift, torch.Generator().manual_seed(3)))


def strokes(n: int = 64) -> torch.Tensor:
    """n normalized 28x28 images (black -1, white 2) holding a 3-pixel-wide vertical bar each, at varied places."""
    images = torch.full((n, 1, 28, 28), -1.0)
    for i in range(n):
        col = 8 + i % 10
        images[i, 0, 6:22, col:col + 3] = 2.0
    return images


FULL = Augmentation(max_shift=2, rotate=15, scale=0.15, shear=0.15, thicken=0.3, thin=0.2)


def test_augmentation_is_seeded_batched_and_keeps_shape_and_range():
    images = strokes()
    first = augment(images, FULL, torch.Generator().manual_seed(5))
    again = augment(images, FULL, torch.Generator().manual_seed(5))
    other = augment(images, FULL, torch.Generator().manual_seed(6))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() >= -1.0 - 1e-5 and first.max() <= 2.0 + 1e-5  # warps interpolate, never overshoot
    assert (first[:, 0, 0, :] == -1.0).float().mean() > 0.9  # the border stays black paper
    changed = (first - images).abs().flatten(1).amax(1) > 0.1
    assert changed.float().mean() > 0.9  # each image gets its own draw, not one warp for the batch
    assert not all(torch.equal(first[0], first[i]) for i in range(1, 10))


def test_thicken_and_thin_change_stroke_width_by_a_pixel_each_way():
    images = strokes(200)
    ink = lambda batch: (batch > 0.5).flatten(1).sum(1).float()  # noqa: E731
    thick = augment(images, Augmentation(thicken=1.0), torch.Generator().manual_seed(0))
    thin = augment(images, Augmentation(thin=1.0), torch.Generator().manual_seed(0))
    assert torch.equal(ink(thick), torch.full((200,), 18.0 * 5))  # 16x3 bar -> 18x5
    assert torch.equal(ink(thin), torch.full((200,), 14.0 * 1))  # 16x3 bar -> 14x1
    mixed = augment(images, Augmentation(thicken=0.3, thin=0.2), torch.Generator().manual_seed(0))
    widths = ink(mixed)
    assert 0.2 < (widths == 90).float().mean() < 0.4 and 0.1 < (widths == 14).float().mean() < 0.3
    assert grow_strokes(images).equal(torch.nn.functional.max_pool2d(images, 3, stride=1, padding=1))


def test_affine_grid_matches_torch_and_zero_warp_is_the_identity():
    theta = torch.randn(16, 2, 3, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.affine_grid(theta, [16, 1, 28, 28], align_corners=False)
    assert torch.allclose(affine_grid(theta, 28, 28), expected, atol=1e-5)
    images = strokes(8)
    still = Augmentation(max_shift=0, rotate=1e-9)  # warps on, but by (almost) nothing
    assert torch.allclose(augment(images, still, torch.Generator().manual_seed(0)), images, atol=1e-4)


def test_augmented_epochs_replay_exactly_from_seed_and_epoch():
    images, labels = strokes(100), torch.arange(100) % 10
    batches = TensorBatches(images, labels, batch_size=32, shuffle=True, seed=3, augmentation=FULL)
    batches.epoch = 2
    first = [b for b, _ in batches]
    second = [b for b, _ in batches]  # a resumed run iterates the same epoch again
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    batches.epoch = 3
    assert not torch.equal(first[0], next(iter(batches))[0])
