"""Exporting a trained checkpoint for use without this package: ONNX or TorchScript (the `lenet-export` command is
`lenet.cli.export`).

The exported model is LeNet-5 alone: it takes a normalized (N, 1, 28, 28) float32 batch of any size N
and returns (N, classes) logits. Preparing images (see `lenet.inference.preprocess`) stays with the caller, so the
training mean and std and the class names travel inside the file: ONNX metadata properties
`lenet.mean`, `lenet.std`, `lenet.classes` (JSON), or the TorchScript extra file `lenet.json`.

ONNX uses torch's default exporter (`torch.export` based; it needs onnx and onnxscript, both offline
packages). TorchScript is deprecated by PyTorch but still loads with `torch.jit.load` in C++ and Python.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

from lenet.checkpoint import classes_of, load_checkpoint, model_from_checkpoint
from lenet.errors import LenetError
from lenet.files import atomic_write, checked_path

EXPORT_FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
EXAMPLE_BATCH = 2  # the batch the exporters trace with; the batch dimension is left dynamic


def metadata(checkpoint: dict[str, Any]) -> dict[str, str]:
    """What a user of the exported file needs to prepare inputs and name outputs, as strings."""
    normalization = checkpoint["normalization"]
    classes = classes_of(checkpoint)
    return {"lenet.mean": repr(float(normalization["mean"])), "lenet.std": repr(float(normalization["std"])),
            "lenet.classes": json.dumps(classes)}


def export_onnx(model: torch.nn.Module, properties: dict[str, str], path: Path) -> None:
    """Write `model` as ONNX with a dynamic batch dimension and `properties` as metadata."""
    try:
        import onnxscript  # noqa: F401  (the exporter imports it lazily and would fail deep inside)
    except ImportError:
        raise LenetError("ONNX export needs the onnx and onnxscript packages: pip install -e '.[export]'.") from None
    example = torch.zeros(EXAMPLE_BATCH, 1, 28, 28)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT_NAME],
                                output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), verbose=False)
    program.model.metadata_props.update(properties)
    program.save(path, external_data=False)  # one self-contained file: the weights are only 240 KB


def export_torchscript(model: torch.nn.Module, properties: dict[str, str], path: Path) -> None:
    """Write `model` as TorchScript (scripted, so no batch size is baked in) with `properties` in lenet.json."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream, and says so each call
        scripted = torch.jit.script(model)
        torch.jit.save(scripted, str(path), _extra_files={"lenet.json": json.dumps(properties)})


EXPORTERS = {"onnx": export_onnx, "torchscript": export_torchscript}


def export(checkpoint_path: str | os.PathLike, format: str, output: str | os.PathLike, force: bool = False) -> Path:
    """Write the checkpoint's model to `output` as "onnx" or "torchscript"; LenetError on any user mistake.

    Only a regular file is ever replaced, and only with `force`: never a folder, a FIFO or a device node.
    """
    if format not in EXPORTERS:
        raise LenetError(f"unknown format {format!r}: use one of {', '.join(EXPORT_FORMATS)}.")
    output = Path(output)
    check_target(output, format, force)
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    model = model_from_checkpoint(checkpoint)
    # The exporters write to a path: export into a private temp folder, then copy the bytes into place
    # atomically, so a failed export never leaves half a file under the target's name.
    try:
        with tempfile.TemporaryDirectory(prefix="lenet-export-") as folder, torch.no_grad():
            temp = Path(folder) / f"model.{suffix(format)}"
            EXPORTERS[format](model, metadata(checkpoint), temp)
            data = temp.read_bytes()
        return atomic_write(output, lambda file: file.write(data))
    except (FileExistsError, NotADirectoryError):
        raise LenetError(f"cannot write {output}: part of its folder path is a file, not a folder; "
                         "choose another -o path.") from None
    except OSError as error:
        raise LenetError(f"cannot write {output} ({error.strerror or error}): choose another -o path.") from None


def check_target(output: Path, format: str, force: bool) -> None:
    """LenetError unless `output` is absent, or a regular file and `force` says it may be replaced."""
    checked_path(output, "model file", hint="choose another -o path")  # a name too long, a denied folder...
    if not output.exists():
        return  # a folder path through a file fails when the model is written, in one sentence too
    mode = output.stat().st_mode
    if stat.S_ISDIR(mode):
        raise LenetError(f"{output} is a folder: pass a file name such as {output / ('model.' + suffix(format))}.")
    if not stat.S_ISREG(mode):
        raise LenetError(f"{output} is not a regular file (a device, FIFO or socket), so it is never replaced: "
                         "choose another -o path.")
    if not force:
        raise LenetError(f"{output} already exists: choose another -o path, or pass --force to replace it.")


def suffix(format: str) -> str:
    """The usual file extension for a format."""
    return "onnx" if format == "onnx" else "pt"
