"""Things that are not digits: the familiarity and evidence that refuse them, and generated non-digits to train on.

A softmax over ten digits always names one of them, so a network trained only on digits calls a letter or a
squiggle "7, 96% sure". The softmax is the wrong place to ask; the features are a better one. `familiarity` asks
whether an image *looks like the digits the network was trained on*: it compares the image's convolutional features
(`LeNet5.features`, 400 numbers) with those of FAMILIAR training digits, kept in every best.pt, and scores it by the
cosine similarity to its NEIGHBOURS-th nearest one (deep nearest neighbours, Sun et al., 2022). A handwritten
letter can fool the softmax, but its strokes, corners and loops seldom sit where a digit's do. `refusal_threshold`
picks the familiarity under which an image is answered "not a digit", on the validation split, so that a chosen
share of real digits is kept. It needs no change to training.

Training helps too, and the default recipe does it. Outlier exposure (Hendrycks, Mazeika and Dietterich, 2019) shows
the network non-digits while it trains and asks it to be unsure of them: `uniform_loss` is the cross-entropy from its
softmax to the uniform distribution. The non-digits need no download: `non_digits` draws them, half `scribbles` (1 to
4 pen strokes, cubic Bezier curves or straight lines, some level, often joined end to start; a one-stroke scribble is
always curved, since a straight one would be a "1") and half `sticks` (stick characters: 2 to 6 strokes between the
points of a 3x3 grid, as letters of many alphabets are built), each scaled so the longer side is 20 px and centred by
mass in a 28x28 field with a 2.3-4 px anti-aliased pen, as MNIST's digits and `lenet.inference.preprocess` make them.
`Scribbles` serves a batch of them, augmented like the digits, beside every training batch (`Config.scribbles`,
`Config.outlier_weight`). What they teach lives in the logits: `evidence`, the energy logsumexp(logits / T) of Liu et
al. (2020), is the score such a model learns to lower. So best.pt keeps two thresholds, chosen together on the
validation digits by `refusal_thresholds`, and an image under either is "not a digit": the familiarity catches what
does not look like a digit, the evidence what the network learned to answer no digit for. Notebook 09 compares them.
"""

from __future__ import annotations

import dataclasses
import functools
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
STICK_STROKES, JITTER, CHAINED, BOWED = 6, 0.2, 0.6, 0.35  # sticks: most strokes; grid jitter; chances
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
    points = bezier(control)  # (count, strokes, POINTS, 2)
    active = (torch.arange(MAX_STROKES)[None] < used[:, None])[..., None, None]  # (count, strokes, 1, 1)
    return placed(points, active, PEN[0] + uniform(count) * (PEN[1] - PEN[0]))


def placed(points: torch.Tensor, active: torch.Tensor, pens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pen paths `points` (count, strokes, POINTS, 2) in any unit, of which the strokes `active` (count, strokes, 1, 1)
    are drawn, placed as MNIST's digits are: the longer side of the path scaled to the 20-px box less the pen, centred
    by mass. Returns them as segments (count, strokes * (POINTS - 1), 2, 2), an unused stroke's far outside the
    field, and the pen widths `pens` (count,)."""
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


def sticks(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, 28, 28) float32 images in [0, 1]: stick characters, white on black, each drawn from `generator`.

    Each is 2 to STICK_STROKES strokes between points of a 3x3 grid, each point moved by up to a tenth of the grid;
    most strokes start where the previous one ended, some bow. Letters of many alphabets are built so, and so are
    digits: a network shown them learns which arrangements of bars and hooks are digits, not that every bar is one."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count == 0:
        return torch.zeros(0, FIELD, FIELD)
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    uniform = lambda *shape: torch.rand(*shape, generator=generator)  # noqa: E731
    grid = torch.tensor([[x, y] for y in (0.0, 0.5, 1.0) for x in (0.0, 0.5, 1.0)])
    n = STICK_STROKES
    used = torch.randint(2, n + 1, (count,), generator=generator)
    start = grid[torch.randint(0, 9, (count, n), generator=generator)] + (uniform(count, n, 2) - 0.5) * JITTER
    end = grid[torch.randint(0, 9, (count, n), generator=generator)] + (uniform(count, n, 2) - 0.5) * JITTER
    chained = uniform(count, n) < CHAINED
    for stroke in range(1, n):  # a chained stroke starts where the previous one ended
        start[chained[:, stroke], stroke] = end[chained[:, stroke], stroke - 1]
    dot = (start - end).norm(dim=-1) < 0.2  # a stroke to (nearly) where it began would be a dot: lengthen it
    end[dot] = end[dot] + torch.tensor([0.5, 0.0])
    along = end - start
    across = torch.stack([-along[..., 1], along[..., 0]], -1)
    bowed = uniform(count, n) < BOWED
    bow = torch.where(bowed, (uniform(count, n) - 0.5) * 1.2, torch.zeros(count, n))[..., None]
    control = torch.stack([start, start + along / 3 + across * bow, start + 2 * along / 3 + across * bow, end], 2)
    points = bezier(control)
    active = (torch.arange(n)[None] < used[:, None])[..., None, None]
    segments, pens = placed(points, active, PEN[0] + uniform(count) * (PEN[1] - PEN[0]))
    return torch.cat([render(segments[first:first + CHUNK], pens[first:first + CHUNK])
                      for first in range(0, count, CHUNK)])


def non_digits(count: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(count, 28, 28): the things outlier exposure shows the network, half `scribbles` and half `sticks`."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    return torch.cat([scribbles(count - count // 2, generator), sticks(count // 2, generator)])


def bezier(control: torch.Tensor) -> torch.Tensor:
    """POINTS points along each cubic Bezier curve of `control` (..., 4, 2): (..., POINTS, 2)."""
    t = torch.linspace(0, 1, POINTS).view(*([1] * (control.dim() - 2)), POINTS, 1)
    weights = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3]  # cubic Bernstein polynomials
    return sum(w * control[..., i:i + 1, :] for i, w in enumerate(weights))


def render(segments: torch.Tensor, pens: torch.Tensor) -> torch.Tensor:
    """Draw segments (n, S, 2, 2) with a round pen of width `pens` (n,): (n, 28, 28), anti-aliased, in [0, 1]."""
    grid = torch.arange(FIELD, dtype=torch.float32)  # a pixel's centre, along x (columns) or y (rows)
    x0, y0 = segments[:, None, None, :, 0, 0], segments[:, None, None, :, 0, 1]  # (n, 1, 1, S): each segment's start
    ax, ay = segments[:, None, None, :, 1, 0] - x0, segments[:, None, None, :, 1, 1] - y0  # and its direction
    dx, dy = grid.view(1, 1, FIELD, 1) - x0, grid.view(1, FIELD, 1, 1) - y0  # (n, 1, 28, S) and (n, 28, 1, S)
    # The nearest point of each segment to each pixel (n, 28, 28, S), then the nearest segment; x and y apart, since
    # a pixel's x depends only on its column and its y only on its row.
    t = ((dx * ax + dy * ay) / (ax * ax + ay * ay).clamp(min=1e-9)).clamp(0, 1)
    distance = ((dx - t * ax).square() + (dy - t * ay).square()).amin(-1).sqrt().flatten(1)  # (n, 784)
    ink = (pens[:, None] / 2 + 0.5 - distance).clamp(0, 1)
    return ink.view(-1, FIELD, FIELD)


BANK = 4096  # non-digits drawn once per run and augmented once an epoch; each batch picks some of them
KEEP = 0.99  # the share of validation digits the refusal threshold keeps
FAMILIAR = 10_000  # training digits whose features best.pt keeps (more refuse a little more and weigh more)
NEIGHBOURS = 5  # familiarity is the similarity to this nearest of them (1 lets one odd training digit vouch)
FEATURE_BATCH = 2048  # images whose features are computed at once (bounds memory)
STEPS = 512  # training steps whose scribbles are picked at once (an epoch of the default recipe is 430)


@functools.lru_cache(maxsize=4)
def non_digit_bank(seed: int) -> torch.Tensor:
    """The BANK `non_digits` a run of `seed` trains beside (drawn once per process and seed: a few seconds)."""
    return non_digits(BANK, torch.Generator().manual_seed(1000 + seed))


@dataclasses.dataclass
class Scribbles:
    """A bank of normalized `non_digits` (scribbles and stick characters), served `per_batch` at a time beside each
    training batch, augmented.

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
        """A bank of BANK non-digits drawn from `seed`, normalized with the training set's mean and std."""
        images = non_digit_bank(seed)[:, None]
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


def refusal_thresholds(familiarities: torch.Tensor, evidences: torch.Tensor, keep: float = KEEP) -> tuple[float, float]:
    """The familiarity and the evidence under which an image is "not a digit", chosen together on the validation
    digits' scores: an image is refused when either is low, so each threshold is the same quantile q of its own
    scores, with q the largest that still keeps `keep` of the digits (found by bisection)."""
    if not 0 < keep <= 1:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    familiarities, evidences = familiarities.float().cpu(), evidences.float().cpu()
    low, high = 0.0, 1 - keep  # refusing at q by each score refuses between q and 2q of the digits
    for _ in range(30):
        middle = (low + high) / 2
        refused = (familiarities < torch.quantile(familiarities, middle)) | (evidences < torch.quantile(evidences, middle))
        low, high = (middle, high) if refused.float().mean() <= 1 - keep else (low, middle)
    return float(torch.quantile(familiarities, low)), float(torch.quantile(evidences, low))


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
