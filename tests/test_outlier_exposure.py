"""The scribbles outlier exposure trains on (benchmarks/outlier_exposure.py): drawn as MNIST's digits are drawn."""

import pytest
import torch

from benchmarks.outlier_exposure import BOX, CENTRE, FIELD, scribbles, uniform_loss


def test_scribbles_are_white_strokes_on_black_in_a_28x28_field():
    images = scribbles(300, torch.Generator().manual_seed(0))
    assert images.shape == (300, FIELD, FIELD) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    ink = images.flatten(1).sum(1)
    assert (ink > 20).all()  # every scribble has strokes: a 20-px line of a 2.3 px pen is ~46
    border = images[:, 0].sum(1) + images[:, -1].sum(1) + images[:, :, 0].sum(1) + images[:, :, -1].sum(1)
    assert (border == 0).float().mean() > 0.9  # centring by mass moves a lopsided few to the edge, as in MNIST


def test_scribbles_are_centred_by_mass_with_their_longer_side_20px():
    images = scribbles(200, torch.Generator().manual_seed(1))
    grid = torch.arange(FIELD, dtype=torch.float32)
    mass = images.sum((1, 2))
    rows, columns = (images.sum(2) * grid).sum(1) / mass, (images.sum(1) * grid).sum(1) / mass
    offsets = torch.cat([rows - CENTRE, columns - CENTRE]).abs()
    assert offsets.mean() < 0.5 and offsets.max() < 2.0  # the mass of the pen's path, not of its rounded ends
    inked = images > 0.5
    height = inked.any(2).sum(1)
    width = inked.any(1).sum(1)
    longer = torch.maximum(height, width).float()
    assert (longer <= BOX + 1).all() and (longer >= BOX - 2).float().mean() > 0.9  # a few short strokes fade


def test_the_same_generator_draws_the_same_scribbles_and_another_draws_others():
    first = scribbles(50, torch.Generator().manual_seed(7))
    assert torch.equal(first, scribbles(50, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, scribbles(50, torch.Generator().manual_seed(8)))
    assert scribbles(0).shape == (0, FIELD, FIELD)
    with pytest.raises(ValueError, match="count must be >= 0"):
        scribbles(-1)


def test_the_uniform_loss_is_lowest_for_flat_logits():
    flat, peaked = torch.zeros(4, 10), torch.eye(10)[:4] * 10
    assert uniform_loss(flat).item() == pytest.approx(torch.log(torch.tensor(10.0)).item())
    assert uniform_loss(peaked) > uniform_loss(flat)
