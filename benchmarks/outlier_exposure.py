"""Outlier exposure with generated scribbles: can training on things that are not digits teach LeNet-5 to refuse
them? A measurement, not yet the default recipe.

A softmax over ten digits always names one of them, so a network trained only on digits calls a letter or a
squiggle "7, 96% sure" (`not_a_digit.py`: post-hoc detectors refuse at most 42% of drawn non-digits). Outlier
exposure (Hendrycks, Mazeika and Dietterich, 2019) shows the network non-digits during training and asks it to be
unsure of them (cross-entropy to the uniform distribution, weighted by --weight). The non-digits here need no
download: `scribbles` draws 1 to 4 pen strokes (cubic Bezier curves or straight lines, some level, often joined end
to start), scaled so the longer side is 20 px and centred by mass in a 28x28 field with a 2.3-4 px anti-aliased pen,
as MNIST's digits and `lenet.inference.preprocess` make them; a one-stroke scribble is always curved (a straight
one would be a "1"). Each training batch of the default recipe gets --scribbles of them, augmented like the digits.

After training (early stopping and temperature as `lenet-train` does), two detectors are judged, each with its
threshold chosen on MNIST's validation split to keep a share of its digits (never on the sets judged): the
calibrated maximum probability (msp) and the energy score logsumexp(logits / T) (Liu et al., 2020).

    python benchmarks/outlier_exposure.py --non-digits ../shared/data/not_digits_dev \
        --digits ../shared/data/real_digits_dev --seeds 0 --scribbles 0 16 --weight 0.5

Prints one row per (scribbles per batch, seed, detector, kept share): MNIST test accuracy, median seconds per
epoch, non-digits refused, and real digits read right (kept, sure, and right).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import torch
import torch.nn.functional as F

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


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from benchmarks.not_a_digit import prepared_folder  # noqa: E402
from lenet.calibration import fit_temperature  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import Config  # noqa: E402
from lenet.data import augment  # noqa: E402
from lenet.files import require_regular_file  # noqa: E402
from lenet.inference.predict import UNSURE_BELOW, Predictor  # noqa: E402
from lenet.train import build_scheduler, predict_logits, prepare  # noqa: E402

KEEP = (0.99, 0.995)  # shares of validation digits each threshold keeps
BANK = 10_000  # scribbles drawn once per run; each batch samples and augments some of them


def uniform_loss(logits: torch.Tensor) -> torch.Tensor:
    """Cross-entropy between softmax(logits) and the uniform distribution: lowest when the network is unsure."""
    return -logits.log_softmax(1).mean(1).mean()


def train(config: Config, per_batch: int, weight: float) -> tuple[torch.nn.Module, object, float]:
    """`lenet-train`'s recipe with `per_batch` scribbles in every batch; the best epoch's model, the splits and the
    median seconds per epoch. Early stopping as `fit` does (lowest validation loss, patience)."""
    _, splits, model, optimizer = prepare(config)
    scheduler = build_scheduler(config, optimizer, len(splits.train), config.epochs)
    generator = torch.Generator().manual_seed(1000 + config.seed)
    bank = (scribbles(BANK, generator)[:, None] - splits.mean) / splits.std if per_batch else None
    best_loss, best_state, waited, seconds = float("inf"), None, 0, []
    for epoch in range(1, config.epochs + 1):
        splits.train.epoch = epoch
        model.train()
        start = time.perf_counter()
        for images, labels in splits.train:
            if per_batch:
                others = augment(bank[torch.randint(0, BANK, (per_batch,), generator=generator)],
                                 splits.train.augmentation, generator)
                logits = model(torch.cat([images, others]))
                loss = F.cross_entropy(logits[:len(labels)], labels) + weight * uniform_loss(logits[len(labels):])
            else:
                loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
        seconds.append(time.perf_counter() - start)
        val_loss = F.cross_entropy(predict_logits(model, splits.val), splits.val.labels).item()
        if val_loss < best_loss:
            best_loss, best_state, waited = val_loss, {k: v.clone() for k, v in model.state_dict().items()}, 0
        else:
            waited += 1
            if config.patience and waited >= config.patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), splits, float(np.median(seconds))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--non-digits", type=Path, required=True, help="a folder of images that are not digits")
    parser.add_argument("--digits", type=Path, required=True, help="a folder of real digits with a labels.json")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default: 0 1 2)")
    parser.add_argument("--scribbles", type=int, nargs="+", default=[0, 16],
                        help="scribbles per training batch of 128 digits, one run each (default: 0 16)")
    parser.add_argument("--weight", type=float, default=0.5, help="weight of the uniform loss (default: 0.5)")
    parser.add_argument("--epochs", type=int, default=Config.epochs, help="maximum epochs (default: the recipe's)")
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)

    def body() -> int:
        labels_file = require_regular_file(args.digits / "labels.json", "labels file",
                                           "pass a folder with a labels.json")
        labels = json.loads(labels_file.read_text(encoding="utf-8"))
        print("| scribbles/batch | seed | MNIST test | s/epoch | detector | validation kept | non-digits refused "
              "| real digits read right |\n|---|---|---|---|---|---|---|---|", flush=True)
        for per_batch in args.scribbles:
            for seed in args.seeds:
                config = Config(seed=seed, epochs=args.epochs, data_dir=args.data_dir)
                model, splits, seconds = train(config, per_batch, args.weight)
                val_logits = predict_logits(model, splits.val)
                temperature = fit_temperature(val_logits, splits.val.labels)
                test_logits = predict_logits(model, splits.test)
                accuracy = (test_logits.argmax(1) == splits.test.labels).float().mean().item()
                reader = Predictor(network=model, mean=splits.mean, std=splits.std, classes=splits.classes,
                                   device=torch.device("cpu"), checkpoint_path=Path("."), temperature=temperature)
                digits, digit_labels, digits_refused = prepared_folder(args.digits, reader, labels)
                others, _, others_refused = prepared_folder(args.non_digits, reader, None)
                with torch.inference_mode():
                    real_logits, other_logits = model(digits) / temperature, model(others) / temperature
                sure_and_right = ((real_logits.softmax(1).max(1).values >= UNSURE_BELOW)
                                  & (real_logits.argmax(1) == torch.from_numpy(digit_labels))).numpy()
                scores = {"msp": lambda logits: logits.softmax(1).max(1).values.numpy(),
                          "energy": lambda logits: torch.logsumexp(logits, 1).numpy()}
                total_real, total_other = len(digits) + digits_refused, len(others) + others_refused
                for name, score in scores.items():
                    validation = score(val_logits / temperature)
                    for keep in KEEP:
                        threshold = np.quantile(validation, 1 - keep)
                        refused = int((score(other_logits) < threshold).sum()) + others_refused
                        right = int(((score(real_logits) >= threshold) & sure_and_right).sum())
                        print(f"| {per_batch} | {seed} | {accuracy:.2%} | {seconds:.2f} | {name} | {keep:.1%} "
                              f"| {refused / total_other:.1%} | {right}/{total_real} |", flush=True)
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
