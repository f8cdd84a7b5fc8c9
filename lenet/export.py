"""Exporting a trained checkpoint for use without this package: ONNX or TorchScript, and the `lenet-export` CLI.

The exported model is LeNet-5 alone: it takes a normalized (N, 1, 28, 28) float32 batch of any size N
and returns (N, classes) logits. Preparing images (see `lenet.preprocess`) stays with the caller, so the
training mean and std and the class names travel inside the file: ONNX metadata properties
`lenet.mean`, `lenet.std`, `lenet.classes` (JSON), or the TorchScript extra file `lenet.json`.

ONNX uses torch's default exporter (`torch.export` based; it needs onnx and onnxscript, both offline
packages). TorchScript is deprecated by PyTorch but still loads with `torch.jit.load` in C++ and Python.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

import torch

from lenet.checkpoint import load_checkpoint, model_from_checkpoint
from lenet.errors import LenetError

FORMATS = ("onnx", "torchscript")
INPUT_NAME, OUTPUT_NAME = "input", "logits"
EXAMPLE_BATCH = 2  # the batch the exporters trace with; the batch dimension is left dynamic


def metadata(checkpoint: dict[str, Any]) -> dict[str, str]:
    """What a user of the exported file needs to prepare inputs and name outputs, as strings."""
    normalization = checkpoint["normalization"]
    classes = list(checkpoint.get("classes") or [str(digit) for digit in range(10)])
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


def export(checkpoint_path: str | os.PathLike, format: str, output: str | os.PathLike) -> Path:
    """Write the checkpoint's model to `output` as "onnx" or "torchscript"; LenetError on any user mistake."""
    if format not in EXPORTERS:
        raise LenetError(f"unknown format {format!r}: use one of {', '.join(FORMATS)}.")
    output = Path(output)
    if output.is_dir():
        raise LenetError(f"{output} is a folder: pass a file name such as {output / ('model.' + suffix(format))}.")
    checkpoint = load_checkpoint(checkpoint_path, map_location="cpu")
    model = model_from_checkpoint(checkpoint)
    # Written beside the target and renamed, so a failed export never leaves half a file under its name.
    temp = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        temp.touch()  # fails here, with a plain OSError, if the folder is not writable
        with torch.no_grad():
            EXPORTERS[format](model, metadata(checkpoint), temp)
        os.replace(temp, output)
    except (FileExistsError, NotADirectoryError):
        raise LenetError(f"cannot write {output}: part of its folder path is a file, not a folder; "
                         "choose another -o path.") from None
    except OSError as error:
        raise LenetError(f"cannot write {output} ({error.strerror or error}): choose another -o path.") from None
    finally:
        with contextlib.suppress(OSError):
            temp.unlink(missing_ok=True)
    return output


def suffix(format: str) -> str:
    """The usual file extension for a format."""
    return "onnx" if format == "onnx" else "pt"


def build_parser() -> argparse.ArgumentParser:
    """The `lenet-export` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-export",
        description="Export a trained LeNet-5 checkpoint as ONNX or TorchScript. The exported model takes a "
                    "normalized (N, 1, 28, 28) float32 batch of any size and returns (N, 10) logits; the "
                    "training mean and std are stored in the file's metadata.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint to export, e.g. "
                                                                "runs/<run>/checkpoints/best.pt (required)")
    parser.add_argument("--format", metavar="FORMAT", required=True,
                        help=f"one of {', '.join(FORMATS)} (required)")
    parser.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="where to write the model, e.g. lenet.onnx or lenet.pt; folders are created "
                             "(required)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-export` / `python -m lenet.export`: 0 on success, 2 on a user error."""
    args = build_parser().parse_args(argv)
    try:
        path = export(args.checkpoint, args.format.lower(), args.output)
    except LenetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {path} ({args.format.lower()}, {path.stat().st_size / 1024:.0f} KB): input {INPUT_NAME!r} "
          f"(N, 1, 28, 28) normalized, output {OUTPUT_NAME!r} (N, 10) logits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
