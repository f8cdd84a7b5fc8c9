import os

import pytest
import torch

from lenet.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from lenet.config import Config
from lenet.errors import LenetError
from lenet.model import LeNet5


def make_checkpoint(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = LeNet5()
    return {"model": model.state_dict(), "config": Config().to_dict(), "epoch": 1,
            "normalization": {"mean": 0.13, "std": 0.31}, "classes": [str(d) for d in range(10)]}


def test_save_then_load_gives_identical_logits(tmp_path):
    checkpoint = make_checkpoint()
    path = save_checkpoint(checkpoint, tmp_path / "model.pt")
    original = LeNet5()
    original.load_state_dict(checkpoint["model"])
    images = torch.randn(5, 1, 28, 28)
    restored = model_from_checkpoint(load_checkpoint(path))
    assert torch.equal(original.eval()(images), restored(images))


def test_a_killed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = save_checkpoint(make_checkpoint(seed=0), tmp_path / "last.pt")
    before = path.read_bytes()

    def dies_halfway(obj, file):
        file.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as if the process were killed mid-write

    monkeypatch.setattr(torch, "save", dies_halfway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(make_checkpoint(seed=1), path)
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert os.listdir(tmp_path) == ["last.pt"]  # no temp file left behind


def test_loads_onto_the_requested_device(tmp_path):
    path = save_checkpoint(make_checkpoint(), tmp_path / "m.pt")
    assert load_checkpoint(path, map_location="cpu")["model"]["conv1.weight"].device.type == "cpu"


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(LenetError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(LenetError, match="is a folder"):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize("content", [b"truncated", b"junk\n", b"this is not a checkpoint", b"\x80\x02}q\x00."])
def test_corrupt_checkpoint_is_a_clear_error(tmp_path, content):
    path = tmp_path / "corrupt.pt"
    if content == b"truncated":
        content = save_checkpoint(make_checkpoint(), tmp_path / "ok.pt").read_bytes()[:1000]
    path.write_bytes(content)
    with pytest.raises(LenetError, match="corrupt|not a checkpoint|not a usable lenet checkpoint|refused"):
        load_checkpoint(path)


class Payload:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (open, (self.target, "w"))


def test_checkpoint_carrying_code_is_refused_and_nothing_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(str(target)), "config": {}, "normalization": {}}, path)
    with pytest.raises(LenetError, match="refused"):
        load_checkpoint(path)
    assert not target.exists()
    # the payload is real: an unsafe load would have created the file
    with open(path, "rb"):
        pass
    torch.load(path, weights_only=False)
    assert target.exists()


def test_other_dicts_are_not_checkpoints(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(LenetError, match="not a usable lenet checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
