"""Things that are not digits: the familiarity score that refuses them, and generated scribbles to train on.

A softmax over ten digits always names one of them, so a network trained only on digits calls a letter or a
squiggle "7, 96% sure". The softmax is the wrong place to ask; the features are a better one. `familiarity` asks
whether an image *looks like the digits the network was trained on*: it compares the image's convolutional features
(`LeNet5.features`, 400 numbers) with those of FAMILIAR training digits, kept in every best.pt, and scores it by the
cosine similarity to its NEIGHBOURS-th nearest one (deep nearest neighbours, Sun et al., 2022). A handwritten
letter can fool the softmax, but its strokes, corners and loops seldom sit where a digit's do. `refusal_threshold`
picks the familiarity under which an image is answered "not a digit", on the validation split, so that a chosen
share of real digits is kept. It needs no change to training.

Training can help too. Outlier exposure (Hendrycks, Mazeika and Dietterich, 2019) shows the network non-digits
while it trains and asks it to be unsure of them: `uniform_loss` is the cross-entropy from its softmax to the
uniform distribution. The non-digits need no download: `scribbles` draws 1 to 4 pen strokes (cubic Bezier curves
or straight lines, some level, often joined end to start), scaled so the longer side is 20 px and centred by mass
in a 28x28 field with a 2.3-4 px anti-aliased pen, as MNIST's digits and `lenet.inference.preprocess` make them; a
one-stroke scribble is always curved (a straight one would be a "1"). `Scribbles` serves a batch of them, augmented
like the digits, beside every training batch (`Config.scribbles`, `Config.outlier_weight`). `evidence`, the energy
logsumexp(logits / T) of Liu et al. (2020), is the score such a model learns to lower; notebook 09 compares both.
"""

from __future__ import annotations

import dataclasses
from typing import Iterator

import torch
import torch.nn.functional as F

from lenet.data import Augmentation, augment

FIELD, BOX, CENTRE = 28, 20.0, 14.0  # as in MNIST and lenet.inference.preprocess
MAX_STROKES = 4
STROKE_ODDS = (0.1, 0.35, 0.3, 0.25)  # the share of scribbles with 1, 2, 3 and 4 strokes
POINTS = 12  # points along each stroke (11 straight segments approximate the curve)
STRAIGHT, AXIS, JOINED = 0.35, 0.4, 0.5  # chances: a stroke is straight; a straight one is level; strokes join
PEN = (2.3, 4.0)  # pen width in px, MNIST's 10th to 90th percentile
CHUNK = 512  # scribbles rendered at once (bounds memory: CHUNK x 784 pixels x 44 segments)


def scribbles(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, 28, 28) float32 images in [0, 1]: white scribbles on black, each drawn from `generator`."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return torch.zeros(0, FIELD, FIELD)
    segments, pens = strokes(count, generator if generator is not None else torch.Generator().manual_seed(0))
    return torch.cat([render(segments[start:start + CHUNK], pens[start:start + CHUNK])
                      for start in range(0, count, CHUNK)])


def strokes(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The scribbles' pen paths as (count, MAX_STROKES * (POINTS - 1), 2, 2) segments in pixel coordinates (an
    unused stroke's segments lie far outside the field), and their pen widths (count,)."""
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    used = torch.multinomial(torch.tensor(STROKE_ODDS), count, replacement=True, generator=generator) + 1
    control = uniform(count, MAX_STROKES, 4, 2)  # four control points per stroke, in a unit square
    joined = uniform(count, MAX_STROKES) < JOINED
    for stroke in range(1, MAX_STROKES):  # a joined stroke starts where the previous one ended
        control[joined[:, stroke], stroke, 0] = control[joined[:, stroke], stroke - 1, 3]
    straight = (uniform(count, MAX_STROKES) < STRAIGHT) & (used > 1)[:, None]
    level = straight & (uniform(count, MAX_STROKES) < AXIS)
    horizontal = uniform(count, MAX_STROKES) < 0.5
    end = control[:, :, 3].clone()  # a level stroke keeps one coordinate of its start
    end[..., 1] = torch.where(level & horizontal, control[:, :, 0, 1], end[..., 1])
    end[..., 0] = torch.where(level & ~horizontal, control[:, :, 0, 0], end[..., 0])
    control[:, :, 3] = end
    third = torch.tensor([1 / 3, 2 / 3]).view(1, 1, 2, 1)
    line = control[:, :, :1] + third * (control[:, :, 3:] - control[:, :, :1])
    control[:, :, 1:3] = torch.where(straight[..., None, None], line, control[:, :, 1:3])
    t = torch.linspace(0, 1, POINTS).view(1, 1, POINTS, 1)
    weights = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3]  # cubic Bernstein polynomials
    points = sum(w * control[:, :, i:i + 1] for i, w in enumerate(weights))  # (count, strokes, POINTS, 2)
    active = (torch.arange(MAX_STROKES)[None] < used[:, None])[..., None, None]  # (count, strokes, 1, 1)
    pens = PEN[0] + uniform(count) * (PEN[1] - PEN[0])
    # Scale the longer side of the pen's path to the 20-px box less the pen, then centre by mass.
    low = torch.where(active, points, torch.inf).amin((1, 2))
    high = torch.where(active, points, -torch.inf).amax((1, 2))
    scale = (BOX - pens) / (high - low).amax(1).clamp(min=0.05)
    points = (points - low[:, None, None]) * scale[:, None, None, None]
    start, finish = points[:, :, :-1], points[:, :, 1:]
    length = (finish - start).norm(dim=-1, keepdim=True) * active  # each segment's ink is about its length
    middle = (start + finish) / 2
    mass = (middle * length).sum((1, 2)) / length.sum((1, 2)).clamp(min=1e-6)
    offset = (CENTRE - mass)[:, None, None]
    start, finish = start + offset, finish + offset
    far = torch.full_like(start, 1e4)
    start, finish = torch.where(active, start, far), torch.where(active, finish, far)
    segments = torch.stack([start, finish], 3).flatten(1, 2)  # (count, segments, 2 ends, 2 coordinates)
    return segments, pens


def render(segments: torch.Tensor, pens: torch.Tensor) -> torch.Tensor:
    """Draw segments (n, S, 2, 2) with a round pen of width `pens` (n,): (n, 28, 28), anti-aliased, in [0, 1]."""
    ys, xs = torch.meshgrid(torch.arange(FIELD, dtype=torch.float32), torch.arange(FIELD, dtype=torch.float32),
                            indexing="ij")
    pixels = torch.stack([xs, ys], -1).view(1, FIELD * FIELD, 1, 2)  # x, y of each pixel's centre
    start, along = segments[:, None, :, 0], (segments[:, :, 1] - segments[:, :, 0])[:, None]  # (n, 1, S, 2)
    # The nearest point of each segment to each pixel, then the nearest segment.
    t = (((pixels - start) * along).sum(-1) / (along * along).sum(-1).clamp(min=1e-9)).clamp(0, 1)
    distance = (pixels - start - t[..., None] * along).norm(dim=-1).amin(-1)  # (n, 784)
    ink = (pens[:, None] / 2 + 0.5 - distance).clamp(0, 1)
    return ink.view(-1, FIELD, FIELD)


BANK = 4096  # scribbles drawn once per run and augmented once an epoch; each batch picks some of them
KEEP = 0.99  # the share of validation digits the refusal threshold keeps
FAMILIAR = 10_000  # training digits whose features best.pt keeps (more refuse a little more and weigh more)
NEIGHBOURS = 5  # familiarity is the similarity to this nearest of them (1 lets one odd training digit vouch)
FEATURE_BATCH = 2048  # images whose features are computed at once (bounds memory)
STEPS = 512  # training steps whose scribbles are picked at once (an epoch of the default recipe is 430)


@dataclasses.dataclass
class Scribbles:
    """A bank of normalized scribbles, served `per_batch` at a time beside each training batch, augmented.

    Like `lenet.data.TensorBatches`, the draws depend only on (seed, epoch), so a resumed run is identical."""

    bank: torch.Tensor  # (BANK, 1, 28, 28) normalized as the digits are, on the training device
    per_batch: int
    weight: float  # the weight of `uniform_loss` beside the digits' cross-entropy
    augmentation: Augmentation | None = None
    seed: int = 0
    epoch: int = 0  # set before iterating, as the training batches' is

    @classmethod
    def drawn(cls, per_batch: int, weight: float, mean: float, std: float, seed: int = 0,
              augmentation: Augmentation | None = None, device: torch.device | str = "cpu",
              memory_format: torch.memory_format = torch.contiguous_format) -> "Scribbles":
        """A bank of BANK scribbles drawn from `seed`, normalized with the training set's mean and std."""
        images = scribbles(BANK, torch.Generator().manual_seed(1000 + seed))[:, None]
        bank = ((images - mean) / std).to(device, memory_format=memory_format)
        return cls(bank, per_batch, weight, augmentation, seed)

    def __iter__(self) -> Iterator[torch.Tensor]:
        """Batches of `per_batch` scribbles, without end: the whole bank is augmented once as iteration starts (once
        an epoch), then each batch picks from it. One large augmentation instead of one small one per step keeps the
        extra cost low, most of all on a GPU, where small kernels cost their launch."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch + 7)
        bank = self.bank if self.augmentation is None else augment(self.bank, self.augmentation, generator)
        while True:  # the picks for STEPS batches at a time, moved to the device in one copy
            picks = torch.randint(0, len(bank), (STEPS, self.per_batch), generator=generator).to(bank.device)
            yield from (bank[index] for index in picks)


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy from softmax(logits) to the uniform distribution: lowest when the network is unsure."""
    return -logits.log_softmax(1).mean(1).mean()


def evidence(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(N,) energy scores logsumexp(logits / T): how strongly any class answers; low for what is not a digit."""
    return torch.logsumexp(logits.float() / temperature, dim=1)


def refusal_threshold(scores: torch.Tensor, keep: float = KEEP) -> float:
    """The score under which an image is "not a digit": the (1 - keep) quantile of the validation digits' `scores`
    (familiarity, or evidence)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return float(torch.quantile(scores.float().cpu(), 1 - keep))


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


def image_familiarity(model: torch.nn.Module, images: torch.Tensor, familiar: torch.Tensor) -> torch.Tensor:
    """(N,) `familiarity` of normalized images (N, 1, 28, 28) under `model`, in batches, without gradients."""
    model.eval()
    with torch.no_grad():
        return torch.cat([familiarity(model.features(images[start:start + FEATURE_BATCH]), familiar)
                          for start in range(0, len(images), FEATURE_BATCH)])
