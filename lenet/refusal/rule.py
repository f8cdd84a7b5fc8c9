"""The refusal: one object that decides "not a digit", fitted on the validation split, saved in best.pt, asked by
every reader (lenet-predict, lenet-score, lenet-serve, the pad and the benchmarks).

A softmax over ten digits always names one of them, so a network trained only on digits calls a letter or a
squiggle "7, 96% sure". The softmax is the wrong place to ask; two scores are better ones:
- `familiarity` asks whether an image *looks like the digits the network was trained on*: it compares the image's
  convolutional features (`LeNet5.features`, 400 numbers) with those of FAMILIAR training digits and scores it by
  the cosine similarity to its NEIGHBOURS-th nearest one (deep nearest neighbours, Sun et al., 2022). A handwritten
  letter can fool the softmax, but its strokes, corners and loops seldom sit where a digit's do.
- `evidence`, the energy logsumexp(logits) of Liu et al. (2020) on calibrated logits (divided by the checkpoint's
  temperature, `lenet.calibration`), is how strongly any digit answers: what outlier exposure
  (`lenet.refusal.exposure`) teaches the network to lower for non-digits.
`Refusal.fit` picks the two thresholds together on the validation digits (`thresholds`), so that a chosen share
KEEP of them passes both; an image under either threshold is "not a digit".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

KEEP = 0.99  # the share of validation digits the refusal keeps
FAMILIAR = 10_000  # training digits whose features best.pt keeps (more refuse a little more and weigh more)
NEIGHBOURS = 5  # familiarity is the similarity to this nearest of them (1 lets one odd training digit vouch)
FEATURE_BATCH = 2048  # images whose features are computed at once (bounds memory)


@torch.no_grad()
def familiar_features(model: torch.nn.Module, images: torch.Tensor, count: int = FAMILIAR,
                      seed: int = 0) -> torch.Tensor:
    """(min(count, N), 400) float16 unit vectors: the features of `count` of the N normalized training `images`
    (N, 1, 28, 28), picked at random from `seed`, on the CPU. Half precision halves best.pt's share (8 MB)."""
    model.eval()
    picks = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count].to(images.device)
    features = torch.cat([model.features(images[picks[start:start + FEATURE_BATCH]]).float()
                          for start in range(0, len(picks), FEATURE_BATCH)])
    return F.normalize(features, dim=1).half().cpu()


def familiarity(features: torch.Tensor, familiar: torch.Tensor, neighbours: int = NEIGHBOURS) -> torch.Tensor:
    """(N,) the cosine similarity of each of `features` (N, 400) to its `neighbours`-th most similar row of `familiar`
    (unit vectors, as `familiar_features` keeps them): near 1 for a digit like those trained on, lower for the rest."""
    similarity = F.normalize(features.float(), dim=1) @ familiar.to(features.device, torch.float32).T
    return similarity.topk(min(neighbours, familiar.shape[0]), dim=1).values[:, -1]


@torch.no_grad()
def image_familiarity(model: torch.nn.Module, images: torch.Tensor, familiar: torch.Tensor) -> torch.Tensor:
    """(N,) `familiarity` of normalized images (N, 1, 28, 28) under `model`, in batches, without gradients."""
    model.eval()
    return torch.cat([familiarity(model.features(images[start:start + FEATURE_BATCH]), familiar)
                      for start in range(0, len(images), FEATURE_BATCH)])


def evidence(logits: torch.Tensor) -> torch.Tensor:
    """(N,) energy scores logsumexp(logits): how strongly any class answers; low for what is not a digit. Pass
    calibrated logits (divided by the temperature): the one convention, in training and at inference alike."""
    return torch.logsumexp(logits.float(), dim=1)


def threshold(scores: torch.Tensor, keep: float = KEEP) -> float:
    """The score under which an image is "not a digit" when one score decides alone: the (1 - keep) quantile of the
    validation digits' `scores` (familiarity, or evidence)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return float(torch.quantile(scores.float().cpu(), 1 - keep))


def thresholds(familiarities: torch.Tensor, evidences: torch.Tensor, keep: float = KEEP) -> tuple[float, float]:
    """The familiarity and the evidence under which an image is "not a digit", chosen together on the validation
    digits' scores: an image is refused when either is low, so each threshold is the same quantile q of its own
    scores, with q the largest that still keeps `keep` of the digits (found by bisection)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    familiarities, evidences = familiarities.float().cpu(), evidences.float().cpu()
    low, high = 0.0, 1 - keep  # refusing at q by each score refuses between q and 2q of the digits
    for _ in range(30):
        middle = (low + high) / 2
        refused = ((familiarities < torch.quantile(familiarities, middle))
                   | (evidences < torch.quantile(evidences, middle)))
        low, high = (middle, high) if refused.float().mean() <= 1 - keep else (low, middle)
    return float(torch.quantile(familiarities, low)), float(torch.quantile(evidences, low))


@dataclass(frozen=True)
class Refusal:
    """The rule that answers "not a digit": familiarity under `familiarity_below` or evidence under `evidence_below`.

    `lenet.checkpoint` saves it in best.pt (`with_refusal`) and reads it back (`refusal_of`)."""

    familiar: torch.Tensor  # (N, 400) unit feature vectors of training digits (float16 in a checkpoint)
    familiarity_below: float
    evidence_below: float

    @classmethod
    def fit(cls, model: torch.nn.Module, train_images: torch.Tensor, val_images: torch.Tensor,
            val_logits: torch.Tensor, keep: float = KEEP, seed: int = 0) -> "Refusal":
        """Keep the features of FAMILIAR of the normalized `train_images`, and pick the thresholds that keep `keep`
        of the validation digits `val_images`, whose calibrated logits are `val_logits`."""
        familiar = familiar_features(model, train_images, seed=seed)
        below = thresholds(image_familiarity(model, val_images, familiar), evidence(val_logits), keep)
        return cls(familiar, *below)

    def to(self, device: torch.device | str) -> "Refusal":
        """The same refusal with its familiar features as float32 on `device`, ready to compare with."""
        return Refusal(self.familiar.to(device, torch.float32), self.familiarity_below, self.evidence_below)

    def refuses(self, familiarities: torch.Tensor, evidences: torch.Tensor) -> torch.Tensor:
        """(N,) bool: which images with these scores are "not a digit": `familiarity` of their features against
        `familiar`, and `evidence` of their calibrated logits."""
        return (familiarities < self.familiarity_below) | (evidences < self.evidence_below)
