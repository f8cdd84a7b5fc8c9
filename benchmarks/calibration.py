"""Is the model's confidence honest? Expected calibration error and a reliability diagram before and after
temperature scaling, and how often things that are not digits come back "unsure" rather than as a confident digit.

    python benchmarks/calibration.py                       # the default model (newest completed run)
    python benchmarks/calibration.py --checkpoint runs/<run>/checkpoints/best.pt --plot calibration.png

The temperature is fitted by `lenet-train` on the validation split; this script measures on the test
split (never seen by the fit) and on 200 non-digits it draws itself: faint blank-ish paper, random
scribbles, letters rendered from a font, pixel noise and photo-like gradients, 40 of each.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from lenet.calibration import expected_calibration_error, reliability  # noqa: E402
from lenet.cli import add_model_arguments, run_command  # noqa: E402
from lenet.inference.predict import UNSURE_BELOW, Predictor, load_model  # noqa: E402
from lenet.inference.preprocess import PreprocessError, preprocess  # noqa: E402

KINDS = ("blank-ish", "scribble", "letter", "noise", "gradient")
LETTERS = "ACEFHKMNPRVWXYkmwx#@&%"  # shapes that are no digit (no O, I, S, B, Z, G, q...)


def non_digit(kind: str, rng: np.random.Generator, size: int = 200) -> Image.Image:
    """One image that is not a digit, of the given kind, as a user might upload by mistake."""
    if kind == "blank-ish":  # paper with faint texture and a speck or two
        pixels = 235 + rng.normal(0, 3, (size, size))
        for _ in range(rng.integers(1, 3)):
            y, x = rng.integers(10, size - 10, 2)
            pixels[y:y + 2, x:x + 2] = 120
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    if kind == "noise":
        return Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
    if kind == "gradient":  # uneven light across a photo of empty paper
        y, x = np.mgrid[0:size, 0:size] / size
        angle = rng.uniform(0, 2 * np.pi)
        pixels = 90 + 140 * (np.cos(angle) * x + np.sin(angle) * y + 1) / 2 + rng.normal(0, 4, (size, size))
        return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))
    image = Image.new("L", (size, size), 255)
    draw = ImageDraw.Draw(image)
    if kind == "letter":
        font = ImageFont.load_default(size=int(size * 0.7))
        draw.text((size / 2, size / 2), str(rng.choice(list(LETTERS))), fill=0, font=font, anchor="mm")
        return image
    points = [tuple(rng.uniform(20, size - 20, 2)) for _ in range(rng.integers(6, 12))]  # a scribble
    draw.line(points, fill=0, width=int(rng.integers(4, 12)), joint="curve")
    return image.filter(ImageFilter.GaussianBlur(0.8))


def non_digits(count_per_kind: int = 40, seed: int = 0) -> list[tuple[str, Image.Image]]:
    """(kind, image) pairs, `count_per_kind` of each kind, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [(kind, non_digit(kind, rng)) for kind in KINDS for _ in range(count_per_kind)]


def verdicts(predictor: Predictor, images: list[tuple[str, Image.Image]], temperature: float) -> Counter:
    """Per (kind, verdict): 'refused' (no ink), 'unsure', or 'digit' (a confident answer), at a temperature."""
    counts: Counter = Counter()
    for kind, image in images:
        try:
            tensor = preprocess(image, predictor.mean, predictor.std).tensor
        except PreprocessError:
            counts[kind, "refused"] += 1
            continue
        with torch.inference_mode():
            top = torch.softmax(predictor.network(tensor) / temperature, dim=1).max().item()
        counts[kind, "unsure" if top < UNSURE_BELOW else "digit"] += 1
    return counts


def test_split_probabilities(predictor: Predictor, data_dir: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of the model on the MNIST test split."""
    from lenet.data import load_splits
    splits = load_splits("mnist", data_dir)
    with torch.inference_mode():
        logits = torch.cat([predictor.network(images) for images, _ in splits.test])
    return logits, splits.test.labels


def plot(logits: torch.Tensor, labels: torch.Tensor, temperature: float, path: Path) -> None:
    """A reliability diagram: accuracy against confidence per bin, before and after scaling."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for axis, t, title in ((axes[0], 1.0, "before (T = 1)"), (axes[1], temperature, f"after (T = {temperature:.2f})")):
        probabilities = (logits / t).softmax(1)
        table = reliability(probabilities, labels)
        centres = [(a + b) / 2 for a, b in zip(table["edges"][:-1], table["edges"][1:])]
        shown = [(c, acc) for c, acc, share in zip(centres, table["accuracy"], table["share"]) if share > 0]
        axis.bar([c for c, _ in shown], [acc for _, acc in shown], width=1 / len(centres), edgecolor="black",
                 alpha=0.7, label="accuracy")
        axis.plot([0, 1], [0, 1], "k--", label="perfect calibration")
        ece = expected_calibration_error(probabilities, labels)
        axis.set(title=f"{title}: ECE {ece:.2%}", xlabel="confidence", xlim=(0, 1), ylim=(0, 1))
    axes[0].set_ylabel("accuracy")
    axes[0].legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def measure(args: argparse.Namespace) -> int:
    predictor = load_model(args.checkpoint, runs_dir=args.runs_dir)
    print(f"model: {predictor.summary()}; temperature {predictor.temperature:.3f}")
    logits, labels = test_split_probabilities(predictor, args.data_dir)
    before = expected_calibration_error(logits.softmax(1), labels)
    after = expected_calibration_error((logits / predictor.temperature).softmax(1), labels)
    print(f"MNIST test (10,000): expected calibration error {before:.2%} before, {after:.2%} after scaling")
    if args.plot:
        plot(logits, labels, predictor.temperature, Path(args.plot))
        print(f"reliability diagram: {args.plot}")
    images = non_digits()
    print("\n| non-digits (40 each) | refused as blank | unsure, T = 1 | unsure, calibrated | confident digit, "
          "T = 1 | confident digit, calibrated |\n|---|---|---|---|---|---|")
    raw, scaled = verdicts(predictor, images, 1.0), verdicts(predictor, images, predictor.temperature)
    for kind in (*KINDS, "all"):
        def n(counts, verdict):
            return sum(v for (k, w), v in counts.items() if w == verdict and kind in (k, "all"))
        print(f"| {kind} | {n(raw, 'refused')} | {n(raw, 'unsure')} | {n(scaled, 'unsure')} | {n(raw, 'digit')} "
              f"| {n(scaled, 'digit')} |")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    parser.add_argument("--data-dir", default=None, help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    parser.add_argument("--plot", metavar="PNG", default=None, help="write the reliability diagram here (default: off)")
    args = parser.parse_args(argv)
    return run_command(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
