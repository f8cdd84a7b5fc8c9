"""Non-digits drawn on the fly, for outlier exposure: scribbles and stick characters, drawn as MNIST's digits were.

No download is needed: `non_digits` draws them, half `scribbles` (1 to 4 pen strokes, cubic Bezier curves or
straight lines, some level, often joined end to start; a one-stroke scribble is always curved, since a straight one
would be a "1") and half `sticks` (stick characters: 2 to 6 strokes between the points of a 3x3 grid, as letters of
many alphabets are built), each scaled so the longer side is 20 px and centred by mass in a 28x28 field with a
2.3-4 px anti-aliased pen, as MNIST's digits and `lenet.inference.preprocess` make them. `lenet.refusal.exposure`
shows them to the network while it trains.
"""

from __future__ import annotations

import torch

from lenet.data import CENTRE, DIGIT_SIZE, FIELD_SIZE

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
        return torch.zeros(0, FIELD_SIZE, FIELD_SIZE)
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
    scale = (DIGIT_SIZE - pens) / (high - low).amax(1).clamp(min=0.05)
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
        return torch.zeros(0, FIELD_SIZE, FIELD_SIZE)
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
    grid = torch.arange(FIELD_SIZE, dtype=torch.float32)  # a pixel's centre, along x (columns) or y (rows)
    x0, y0 = segments[:, None, None, :, 0, 0], segments[:, None, None, :, 0, 1]  # (n, 1, 1, S): each segment's start
    ax, ay = segments[:, None, None, :, 1, 0] - x0, segments[:, None, None, :, 1, 1] - y0  # and its direction
    dx, dy = grid.view(1, 1, FIELD_SIZE, 1) - x0, grid.view(1, FIELD_SIZE, 1, 1) - y0  # (n, 1, 28, S) and (n, 28, 1, S)
    # The nearest point of each segment to each pixel (n, 28, 28, S), then the nearest segment; x and y apart, since
    # a pixel's x depends only on its column and its y only on its row.
    t = ((dx * ax + dy * ay) / (ax * ax + ay * ay).clamp(min=1e-9)).clamp(0, 1)
    distance = ((dx - t * ax).square() + (dy - t * ay).square()).amin(-1).sqrt().flatten(1)  # (n, 784)
    ink = (pens[:, None] / 2 + 0.5 - distance).clamp(0, 1)
    return ink.view(-1, FIELD_SIZE, FIELD_SIZE)
