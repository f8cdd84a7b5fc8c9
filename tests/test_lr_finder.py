import math

import pytest
import torch

from lenet.data import load_splits
from lenet.errors import LenetError
from lenet.lr_finder import lr_range_test
from lenet.model import LeNet5


@pytest.fixture
def setup(tiny_mnist):
    torch.manual_seed(0)
    model = LeNet5()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # one real step so the optimizer has state (Adam's moments) that must survive the test
    splits = load_splits("mnist", tiny_mnist, val_size=200, batch_size=32)
    images, labels = next(iter(splits.train))
    torch.nn.functional.cross_entropy(model(images), labels).backward()
    optimizer.step()
    return model, optimizer, splits.train


def test_range_test_stops_on_divergence_and_suggests_a_finite_rate_inside_the_sweep(setup):
    model, optimizer, batches = setup
    result = lr_range_test(model, optimizer, batches, start_lr=1e-6, end_lr=100.0, steps=200)
    assert result.diverged and len(result.lrs) < 200
    assert result.losses[-1] > 2 * min(result.losses)
    assert math.isfinite(result.suggested_lr) and 1e-6 <= result.suggested_lr <= result.lrs[-1]
    assert all(b > a for a, b in zip(result.lrs, result.lrs[1:]))  # the rate only grows


def test_range_test_leaves_model_and_optimizer_untouched(setup):
    model, optimizer, batches = setup
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    state = {k: {n: t.clone() for n, t in s.items()} for k, s in optimizer.state_dict()["state"].items()}
    lr = optimizer.param_groups[0]["lr"]
    lr_range_test(model, optimizer, batches, steps=50)
    assert all(torch.equal(weights[k], v) for k, v in model.state_dict().items())
    after = optimizer.state_dict()["state"]
    assert all(torch.equal(state[k][n], after[k][n]) for k in state for n in state[k])
    assert optimizer.param_groups[0]["lr"] == lr


def test_bad_sweep_bounds_are_a_clear_error(setup):
    model, optimizer, batches = setup
    with pytest.raises(LenetError, match="start_lr < end_lr"):
        lr_range_test(model, optimizer, batches, start_lr=1.0, end_lr=0.1)


@pytest.mark.slow
def test_find_lr_flag_prints_a_suggestion_and_trains_nothing(tiny_mnist, tmp_path):
    import subprocess
    import sys
    result = subprocess.run(
        [sys.executable, "-m", "lenet.cli.train", "--find-lr", "--data-dir", str(tiny_mnist), "--val-size", "200",
         "--batch-size", "32", "--runs-dir", str(tmp_path), "--device", "cpu"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "suggested maximum lr" in result.stdout
    assert not any(tmp_path.iterdir())  # no run folder: nothing was trained
