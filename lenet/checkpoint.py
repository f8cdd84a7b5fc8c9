"""The one checkpoint format: a plain dict, written atomically, loaded safely on any device.

A checkpoint holds `model` (state dict), `optimizer`, `scheduler`, `config` (a dict), `epoch`,
`metrics` (that epoch's record), `history`, `normalization` ({"mean", "std"}), `classes` and
`rng` (torch's CPU generator state). Loading uses `weights_only=True`, so a file that carries pickled
code is refused and nothing in it runs.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from lenet.config import Config
from lenet.errors import LenetError
from lenet.model import LeNet5

FORMAT_VERSION = 1
REQUIRED_KEYS = ("model", "config", "normalization")


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `checkpoint` to `path` via a temp file and a rename, so a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save({"format_version": FORMAT_VERSION, **checkpoint}, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely (`weights_only=True`) onto `map_location`; LenetError if it is unusable."""
    path = Path(path)
    if path.is_dir():
        raise LenetError(f"{path} is a folder, not a checkpoint: pass a .pt file such as {path / 'best.pt'}.")
    if not path.exists():
        raise LenetError(f"no checkpoint at {path}: check the path, or run `make train` to create one.")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise LenetError(f"refused to load {path}: it is not a plain lenet checkpoint (it may carry code, "
                         "which is never run); use a checkpoint written by lenet-train.") from None
    except Exception:  # torch.load raises many kinds (RuntimeError, EOFError, KeyError...) on junk
        raise LenetError(f"{path} is corrupt or not a checkpoint: use another one, or retrain.") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in REQUIRED_KEYS):
        raise LenetError(f"{path} is not a lenet checkpoint (it lacks the model, config or normalization).")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any]) -> LeNet5:
    """Rebuild the model from the config and weights stored in a checkpoint, in eval mode."""
    model = LeNet5(num_classes=len(checkpoint.get("classes", range(10))))
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError):
        raise LenetError("the checkpoint's weights do not fit LeNet-5: use a checkpoint written by lenet-train.") \
            from None
    return model.eval()


def config_from_checkpoint(checkpoint: dict[str, Any]) -> Config:
    """The training config stored in a checkpoint."""
    return Config.from_dict(checkpoint["config"])
