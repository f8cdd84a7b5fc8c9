"""Training configuration: one frozen dataclass, its validation, presets and the command-line mapping.

The defaults reproduce the README's headline result (>= 99.0% MNIST test accuracy, mean of 3 seeds).
Notebooks change it with `dataclasses.replace(cfg, epochs=2)`; the CLI maps `--field value` onto it.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Sequence

from lenet.errors import LenetError

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("constant", "onecycle")
DEVICES = ("auto", "cpu", "cuda", "mps")
DATASETS = ("mnist", "fashion-mnist")


@dataclass(frozen=True)
class Config:
    """Everything that defines a training run; stored with every run and every checkpoint."""

    dataset: str = field(default="mnist", metadata={"help": "mnist or fashion-mnist"})
    data_dir: str | None = field(
        default=None, metadata={"help": "where the IDX files live; else $LENET_DATA_DIR, else ./data"}
    )
    val_size: int = field(default=5000, metadata={"help": "training images held out for validation"})
    optimizer: str = field(default="adam", metadata={"help": "adam or sgd (with momentum)"})
    lr: float = field(default=3e-3, metadata={"help": "learning rate (the peak rate under onecycle)"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (ignored by adam)"})
    weight_decay: float = field(default=0.0, metadata={"help": "L2 weight decay"})
    batch_size: int = field(default=128, metadata={"help": "training batch size"})
    epochs: int = field(default=12, metadata={"help": "maximum number of epochs"})
    max_shift: int = field(default=2, metadata={"help": "augment: shift training images by up to N pixels"})
    schedule: str = field(default="onecycle", metadata={"help": "learning-rate schedule: constant or onecycle"})
    patience: int = field(
        default=3, metadata={"help": "stop after this many epochs without a lower val loss; 0 disables"}
    )
    seed: int = field(default=0, metadata={"help": "random seed for initialisation and shuffling"})
    device: str = field(default="auto", metadata={"help": "auto (cuda > mps > cpu), cpu, cuda or mps"})
    channels_last: bool = field(default=False, metadata={"help": "store activations channels-last"})
    run_name: str | None = field(default=None, metadata={"help": "run folder name; else dataset-optimizer-time"})
    runs_dir: str = field(default="runs", metadata={"help": "parent folder of all runs"})
    log_every: int = field(default=100, metadata={"help": "log the training loss every N steps"})
    overwrite: bool = field(default=False, metadata={"help": "replace an existing run folder of the same name"})

    def __post_init__(self) -> None:
        def check(ok: bool, flag: str, message: str) -> None:
            if not ok:
                raise LenetError(f"--{flag} {message}, got {getattr(self, flag.replace('-', '_'))!r}.")

        check(self.dataset in DATASETS, "dataset", f"must be one of {', '.join(DATASETS)}")
        check(self.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
        check(self.schedule in SCHEDULES, "schedule", f"must be one of {', '.join(SCHEDULES)}")
        check(self.device in DEVICES, "device", f"must be one of {', '.join(DEVICES)}")
        check(self.lr > 0, "lr", "must be > 0")
        check(0 <= self.momentum < 1, "momentum", "must be in [0, 1)")
        check(self.weight_decay >= 0, "weight-decay", "must be >= 0")
        check(self.batch_size >= 1, "batch-size", "must be >= 1")
        check(self.epochs >= 1, "epochs", "must be >= 1")
        check(self.patience >= 0, "patience", "must be >= 0")
        check(0 <= self.max_shift <= 6, "max-shift", "must be between 0 and 6")
        check(self.val_size >= 1, "val-size", "must be >= 1")
        check(self.log_every >= 1, "log-every", "must be >= 1")
        check(self.run_name is None or (self.run_name and "/" not in self.run_name), "run-name",
              "must be a plain folder name")

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (JSON- and checkpoint-safe)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Config":
        """Rebuild a config saved by `to_dict`, ignoring fields this version no longer has."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


# Named sets of overrides; `--preset fast` applies one before the flags the user typed.
# "fast": of the recipes searched (benchmarks/recipes.py, RESULTS.md), the fastest to bring each of
# seeds 0, 1, 2 clearly past 99.0% test accuracy (>= 99.08%; 5 of seeds 0-5 reach 99.0%). Batch 256
# runs faster per image than 128 on a CPU; the 1-pixel shifts add about 0.2 points at this length.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "fast": {"batch_size": 256, "lr": 1e-2, "epochs": 4, "max_shift": 1, "schedule": "onecycle",
             "channels_last": True},
}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_parser(prog: str = "lenet-train", description: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one dashed flag per Config field; each help text states its default."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default",
                        help="start from a named set of settings (default: default)")
    for f in fields(Config):
        help_text = f"{f.metadata.get('help', '')} (default: {f.default})"
        if f.type in ("bool", bool):
            parser.add_argument(_flag(f.name), dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(_flag(f.name), dest=f.name, type=kind, default=None, metavar=f.name.upper(),
                                help=help_text)
    return parser


def config_from_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Config:
    """The preset, then every flag the user typed; a bad value exits with a message naming the flag."""
    values = dict(PRESETS[args.preset])
    values.update({f.name: getattr(args, f.name) for f in fields(Config) if getattr(args, f.name) is not None})
    try:
        return Config(**values)
    except LenetError as error:
        parser.error(str(error))
        raise  # unreachable: parser.error exits


def parse_config(argv: Sequence[str] | None = None) -> Config:
    """Parse command-line flags into a Config (exits with a clear message on bad input)."""
    parser = build_parser()
    return config_from_args(parser.parse_args(argv), parser)
