"""Outlier exposure (Hendrycks, Mazeika and Dietterich, 2019): drawn non-digits beside every training batch.

The network sees `per_batch` non-digits after each batch of digits and is asked to be unsure of them:
`uniform_loss` is the cross-entropy from its softmax to the uniform distribution, added at `weight` to the digits'
loss. It joins training as any extra batch source does: `OutlierExposure.beside(batches)` appends the non-digits to
each batch's images (the labels stay the digits'), and `loss` scores their logits. `lenet.train.train_one_epoch`
takes it as its `extra` and knows nothing else about it; `Config.scribbles` and `Config.outlier_weight` turn it on.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Iterator

import torch

from lenet.config import Config
from lenet.data import Augmentation, Splits, augment
from lenet.refusal.non_digits import non_digits

BANK = 4096  # non-digits drawn once per run and augmented once an epoch; each batch picks some of them
Batch = tuple[torch.Tensor, torch.Tensor]  # (images, labels)
STEPS = 512  # training steps whose non-digits are picked at once (an epoch of the default recipe is 430)


@functools.lru_cache(maxsize=4)
def non_digit_bank(seed: int) -> torch.Tensor:
    """The BANK `non_digits` a run of `seed` trains beside (drawn once per process and seed: a few seconds)."""
    return non_digits(BANK, torch.Generator().manual_seed(1000 + seed))


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from softmax(logits) to the uniform distribution: lowest when the network is unsure."""
    return -logits.log_softmax(1).mean(1).mean()


@dataclasses.dataclass
class OutlierExposure:
    """A bank of normalized non-digits, `per_batch` of them served beside each training batch, augmented as the
    digits are, and the loss that asks the network to be unsure of them.

    Like `lenet.data.TensorBatches`, the draws depend only on (seed, epoch), so a resumed run is identical."""

    bank: torch.Tensor  # (BANK, 1, 28, 28) normalized as the digits are, on the training device
    per_batch: int
    weight: float  # the weight of `uniform_loss` beside the digits' cross-entropy
    augmentation: Augmentation | None = None
    seed: int = 0

    @classmethod
    def drawn(cls, per_batch: int, weight: float, mean: float, std: float, seed: int = 0,
              augmentation: Augmentation | None = None, device: torch.device | str = "cpu",
              memory_format: torch.memory_format = torch.contiguous_format) -> "OutlierExposure":
        """A bank of BANK non-digits drawn from `seed`, normalized with the training set's mean and std."""
        images = non_digit_bank(seed)[:, None]
        bank = ((images - mean) / std).to(device, memory_format=memory_format)
        return cls(bank, per_batch, weight, augmentation, seed)

    @classmethod
    def for_run(cls, config: Config, splits: Splits) -> "OutlierExposure | None":
        """What `config` shows beside each batch of `splits.train`, on its device; None when `config.scribbles` is 0."""
        if not config.scribbles:
            return None
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        return cls.drawn(config.scribbles, config.outlier_weight, splits.mean, splits.std, config.seed,
                         splits.train.augmentation, splits.train.images.device, memory_format)

    def stream(self, epoch: int) -> Iterator[torch.Tensor]:
        """Batches of `per_batch` non-digits for `epoch`, without end: the whole bank is augmented once as the epoch
        starts, then each batch picks from it. One large augmentation instead of one small one per step keeps the
        extra cost low, most of all on a GPU, where small kernels cost their launch."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7)
        bank = self.bank if self.augmentation is None else augment(self.bank, self.augmentation, generator)
        while True:  # the picks for STEPS batches at a time, moved to the device in one copy
            picks = torch.randint(0, len(bank), (STEPS, self.per_batch), generator=generator).to(bank.device)
            yield from (bank[index] for index in picks)

    def beside(self, batches: Iterable[Batch]) -> Iterator[Batch]:
        """Each (images, labels) of `batches` with this epoch's non-digits appended to the images (one forward pass
        for both); `batches.epoch` picks the epoch's draws."""
        others = self.stream(getattr(batches, "epoch", 0))
        for images, labels in batches:
            yield torch.cat([images, next(others)]), labels

    def loss(self, logits: torch.Tensor) -> torch.Tensor:
        """The non-digits' part of the loss: `weight` times their `uniform_loss`."""
        return self.weight * uniform_loss(logits)
