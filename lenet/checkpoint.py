"""The one checkpoint format: how a checkpoint is built, written, read, validated and turned back into a model.

A checkpoint is a plain dict, and this module names every key in it: `format_version`, `model` (state dict),
`optimizer`, `scheduler`, `schedule_start` (the epoch the current learning-rate schedule began at), `config` (a
dict), `epoch`, `metrics` (that epoch's record), `history`, `normalization` ({"mean", "std"}), `classes`, `rng`
(torch's CPU generator state) and, in best.pt once training has ended (`lenet.finish`), `temperature` (see
`lenet.calibration`) and `refusal` (`lenet.refusal.Refusal`: the features of training digits as float16 unit
vectors, and the familiarity and evidence under either of which an image is "not a digit"). A checkpoint without
them (an epoch's, or last.pt) uses the softmax as it is and refuses nothing. It is written atomically and loaded
with `weights_only=True`, so a file that carries pickled code is refused and nothing in it runs. Every field a
reader uses is validated once, here, so a damaged or crafted file is one clear sentence, never a traceback.
"""

from __future__ import annotations

import errno
import math
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from lenet.config import Config
from lenet.data import DIGITS
from lenet.errors import LenetError
from lenet.files import atomic_write, checked_path, explain_os_error, require_regular_file
from lenet.model import LeNet5
from lenet.refusal.rule import Refusal
from lenet.runs import BEST, checkpoint_path, epoch_checkpoints

FORMAT_VERSION = 2  # 2: the refusal as one `refusal` entry (1 kept familiar, refuse_below, evidence_below apart)
REFUSAL_KEYS = {"familiar", "familiarity_below", "evidence_below"}
CHECKPOINT_HINT = "pass a .pt file such as runs/<run>/checkpoints/best.pt"


def build_checkpoint(*, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
                     schedule_start: int, config: Config, epoch: int, history: list[dict[str, float]],
                     mean: float, std: float, classes: list[str]) -> dict[str, Any]:
    """This moment of a run in the one checkpoint format."""
    return {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "schedule_start": schedule_start,
        "config": config.to_dict(),
        "epoch": epoch,
        "metrics": history[-1] if history else {},
        "history": history,
        "normalization": {"mean": mean, "std": std},
        "classes": list(classes),
        "rng": torch.get_rng_state(),
    }


def save_checkpoint(checkpoint: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write `checkpoint` to `path` atomically: a crash or a full disk never leaves half a file."""
    return atomic_write(path, lambda file: torch.save({"format_version": FORMAT_VERSION, **checkpoint}, file))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint safely (`weights_only=True`); LenetError in one sentence if unusable."""
    path = checked_path(path, "checkpoint", f"no checkpoint at {path}: check the path, or run `make train` to "
                         "create one.", CHECKPOINT_HINT, follow_symlinks=False)
    if path.is_dir():
        raise LenetError(f"{path} is a folder, not a checkpoint: {folder_hint(path)}.")
    require_regular_file(path, "checkpoint", CHECKPOINT_HINT)
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        # weights_only refuses a pickled object by naming its class ("Unsupported global: GLOBAL ..."); any
        # other unpickling error means the bytes are not a pickle at all (an image, a text file...).
        if "global" in str(error).lower():
            raise LenetError(f"refused to load {path}: it holds Python objects besides tensors (a file made to "
                             "run code looks like this; nothing in it was run): use a checkpoint written by "
                             "lenet-train.") from None
        raise LenetError(f"{path} is not a checkpoint (not a file torch.save wrote): "
                         f"{CHECKPOINT_HINT}.") from None
    except Exception as error:  # torch.load raises many kinds (RuntimeError, EOFError, OSError...) on a damaged zip
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EIO):  # not the bytes
            raise LenetError(explain_os_error(path, error, "checkpoint", CHECKPOINT_HINT)) from None
        raise LenetError(f"{path} is corrupt or truncated: {damaged_hint(path)}.") from None
    validate(checkpoint, path)
    return checkpoint


def folder_hint(folder: Path) -> str:
    """What to pass instead of a folder: its best.pt when it is a run or its checkpoints folder."""
    for candidate in (checkpoint_path(folder, BEST), folder / BEST):
        if candidate.is_file():
            return f"pass {candidate}"
    return CHECKPOINT_HINT


def damaged_hint(path: Path) -> str:
    """Which other checkpoints beside a damaged one are intact, and how to use them."""
    intact = []
    for other in epoch_checkpoints(path.parent):
        try:
            torch.load(other, map_location="cpu", weights_only=True)
        except Exception:
            continue
        intact.append(other)
    if not intact:
        return "no other checkpoint beside it can be read, so retrain"
    names = ", ".join(p.name for p in intact)
    return (f"{names} in {path.parent} are intact; continue training from the newest with "
            f"--resume {intact[-1]}, or pass it as --checkpoint")


def validate(checkpoint: Any, path: Path) -> None:
    """LenetError unless every field a reader uses is present, well typed and finite."""
    def refuse(problem: str) -> None:
        raise LenetError(f"{path} is not a usable lenet checkpoint ({problem}): use one written by lenet-train.")

    if not isinstance(checkpoint, dict) or not {"model", "config", "normalization"} <= checkpoint.keys():
        refuse("it lacks the model, config or normalization")
    version = checkpoint.get("format_version")
    if version != FORMAT_VERSION:
        raise LenetError(f"{path} is in checkpoint format {version}, and this lenet reads format {FORMAT_VERSION}: "
                         "train the model again with this version (`make train`).")
    weights = checkpoint["model"]
    if not isinstance(weights, dict) or not all(isinstance(t, torch.Tensor) for t in weights.values()):
        refuse("its model is not a dict of tensors")
    if not all(torch.isfinite(t).all() for t in weights.values() if t.is_floating_point()):
        refuse("its weights hold NaN or infinite values, so its answers would be meaningless")
    if not isinstance(checkpoint["config"], dict):
        refuse("its config is not a dict")
    normalization = checkpoint["normalization"]
    if not isinstance(normalization, dict) or not {"mean", "std"} <= normalization.keys():
        refuse("its normalization lacks the mean or std")
    mean, std = normalization["mean"], normalization["std"]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (mean, std)) or std <= 0:
        refuse(f"its normalization mean {mean!r} / std {std!r} is not a finite mean and a positive std")
    classes = checkpoint.get("classes", list(DIGITS))
    if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
        refuse("its classes are not a list of names")
    output = weights.get("fc3.weight")
    if isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] != len(classes):
        refuse(f"it names {len(classes)} classes but its network has {output.shape[0]} outputs")
    temperature = checkpoint.get("temperature")
    if temperature is not None and not (isinstance(temperature, (int, float)) and 0 < temperature < math.inf):
        refuse(f"its temperature {temperature!r} is not a positive number")
    refusal = checkpoint.get("refusal")
    if refusal is None:
        return
    if not isinstance(refusal, dict) or not REFUSAL_KEYS <= refusal.keys():
        refuse(f"its refusal is not a dict of {', '.join(sorted(REFUSAL_KEYS))}")
    for key in ("familiarity_below", "evidence_below"):
        if not (isinstance(refusal[key], (int, float)) and math.isfinite(refusal[key])):
            refuse(f"its refusal threshold {refusal[key]!r} is not a finite number")
    familiar = refusal["familiar"]
    features = weights.get("fc1.weight")
    width = features.shape[1] if isinstance(features, torch.Tensor) and features.ndim == 2 else None
    if not (isinstance(familiar, torch.Tensor) and familiar.ndim == 2 and len(familiar)
            and familiar.is_floating_point() and familiar.shape[1] == width and bool(torch.isfinite(familiar).all())):
        refuse("its familiar features are not a finite (N, 400) tensor")


def with_calibration(checkpoint: dict[str, Any], temperature: float, refusal: Refusal) -> dict[str, Any]:
    """`checkpoint` with what the step after training fits: its temperature and its refusal."""
    return {**checkpoint, "temperature": temperature,
            "refusal": {"familiar": refusal.familiar, "familiarity_below": refusal.familiarity_below,
                        "evidence_below": refusal.evidence_below}}


def temperature_of(checkpoint: dict[str, Any]) -> float:
    """The temperature that calibrates a validated checkpoint's logits (1.0 for one never calibrated)."""
    return float(checkpoint.get("temperature") or 1.0)


def refusal_of(checkpoint: dict[str, Any]) -> Refusal | None:
    """The refusal stored in a validated checkpoint, or None for one that refuses nothing (an epoch's checkpoint)."""
    refusal = checkpoint.get("refusal")
    if refusal is None:
        return None
    return Refusal(refusal["familiar"], float(refusal["familiarity_below"]), float(refusal["evidence_below"]))


def classes_of(checkpoint: dict[str, Any]) -> list[str]:
    """The class names a checkpoint predicts (digits for one that names none)."""
    return list(checkpoint.get("classes") or DIGITS)


def model_from_checkpoint(checkpoint: dict[str, Any]) -> LeNet5:
    """Rebuild the model from the weights stored in a validated checkpoint, in eval mode."""
    model = LeNet5(num_classes=len(classes_of(checkpoint)))
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError):
        raise LenetError("the checkpoint's weights do not fit LeNet-5: use a checkpoint written by lenet-train.") \
            from None
    return model.eval()


def restore(checkpoint: dict[str, Any], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
            scheduler: Any = None) -> None:
    """Put a run back as the checkpoint left it: weights, optimizer state, the CPU RNG, and the schedule's state
    when `scheduler` is given (pass None to start a new schedule, as an extended run does)."""
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    torch.set_rng_state(checkpoint["rng"].cpu())
