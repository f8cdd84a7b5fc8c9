"""`lenet-train`: the training command line — flags from `Config`, --preset, --resume, --find-lr, and Ctrl+C."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from lenet.cli import add_setting_flags, print_error, run_command, typed_settings
from lenet.config import PRESETS, RESUMABLE, Config, ConfigError, flag
from lenet.lr_finder import find_lr
from lenet.train import Interrupted, fit


def train_parser() -> argparse.ArgumentParser:
    """The `lenet-train` command line: --preset, one flag per Config field, --resume and --find-lr."""
    parser = argparse.ArgumentParser(prog="lenet-train", description="Train LeNet-5 on MNIST.")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="start from a named set of settings (default: default)")
    add_setting_flags(parser, Config)
    parser.add_argument("--resume", metavar="RUN", default=None,
                        help="continue a run folder from its last.pt (or from a checkpoint file of it, such as "
                             f"checkpoints/epoch_03.pt); only {', '.join(flag(n) for n in RESUMABLE)} may be "
                             "given with it (default: off)")
    parser.add_argument("--find-lr", action="store_true",
                        help="run the learning-rate range test for this config instead of training (default: off)")
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """The preset, then every flag the user typed; a bad value exits with a message naming the flag."""
    try:
        return Config(**{**PRESETS[args.preset], **typed_settings(args, Config)})
    except ConfigError as error:
        parser.error(error.as_flag())
        raise  # unreachable: parser.error exits


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `lenet-train` / `python -m lenet.cli.train`."""
    parser = train_parser()
    args = parser.parse_args(argv)
    if args.resume is not None and args.preset != "default":
        parser.error("--preset cannot be given with --resume: a continued run keeps its own settings.")
    config = config_from_args(args, parser) if args.resume is None else None

    def body() -> int:
        if args.find_lr:
            tested = config or Config()
            result = find_lr(tested)
            print(f"{tested.optimizer}, batch {tested.batch_size}: loss lowest at lr "
                  f"{result.suggested_lr * 10:.2g}{' before diverging' if result.diverged else ''}; "
                  f"suggested maximum lr {result.suggested_lr:.2g} (for --schedule onecycle --lr)")
            return 0
        fit(config, resume=args.resume, changes=typed_settings(args, Config) if args.resume else None)
        return 0

    try:
        return run_command(body)
    except Interrupted as interrupted:
        if interrupted.epochs_saved == 0 and args.resume is None:
            print_error("interrupted before the first checkpoint, so nothing was saved: run the same command "
                        "again to start over.")
        else:
            print_error(f"interrupted: epochs 1-{interrupted.epochs_saved} are saved; continue with "
                        f"--resume {interrupted.run_dir}")
        return 130
    except KeyboardInterrupt:
        print_error("interrupted before training began, so nothing was saved.")
        return 130


if __name__ == "__main__":
    sys.exit(main())
