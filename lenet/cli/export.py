"""`lenet-export`: a trained checkpoint written as ONNX or TorchScript (`lenet.apps.export`)."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lenet.apps.export import EXPORT_FORMATS, INPUT_NAME, OUTPUT_NAME, export
from lenet.cli import run_parsed


def export_parser() -> argparse.ArgumentParser:
    """The `lenet-export` command line; every help text states its default."""
    parser = argparse.ArgumentParser(
        prog="lenet-export", description="Export a trained LeNet-5 checkpoint as ONNX or TorchScript. The exported "
        "model takes a normalized (N, 1, 28, 28) float32 batch of any size and returns (N, 10) logits; the training "
        "mean and std are stored in the file's metadata.")
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="the checkpoint to export, e.g. "
                                                                "runs/<run>/checkpoints/best.pt (required)")
    parser.add_argument("--format", metavar="FORMAT", required=True,
                        help=f"one of {', '.join(EXPORT_FORMATS)} (required)")
    parser.add_argument("-o", "--output", metavar="FILE", required=True,
                        help="where to write the model, e.g. lenet.onnx or lenet.pt; folders are created "
                             "(required)")
    parser.add_argument("--force", action="store_true",
                        help="replace FILE if it already exists; only a regular file is ever replaced (default: off)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-export` / `python -m lenet.cli.export`: 0 on success, 2 on a user error."""
    return run_parsed(export_parser(), export_file, argv)


def export_file(args: argparse.Namespace) -> int:
    """Export the checkpoint the arguments name, and say where it went."""
    path = export(args.checkpoint, args.format.lower(), args.output, force=args.force)
    print(f"wrote {path} ({args.format.lower()}, {path.stat().st_size / 1024:.0f} KB): input {INPUT_NAME!r} "
          f"(N, 1, 28, 28) normalized, output {OUTPUT_NAME!r} (N, 10) logits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
