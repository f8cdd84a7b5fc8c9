"""Changes to the default recipe tried for refusing more non-digits, and not adopted: each is `outlier_exposure.py`
(same runs, same three detectors, same table) with one change to training, so its rows read beside the default's.

- elastic: an elastic distortion (Simard, Steinkraus and Platt, 2003), the classic augmentation for handwriting, on
  top of the default's affine warp: every training image, digit or non-digit, is also moved by a smooth random field,
  GRID x GRID random displacements of standard deviation PIXELS px interpolated bicubically over the image.
- turned: a SHARE of the bank of drawn non-digits replaced by training digits turned into non-digits: mirrored left to
  right, or with --rotate half mirrored and half turned a quarter (either way), of the classes that neither makes
  into a digit (TURNABLE: 2 3 4 6 7 9; a mirrored 0, 1 or 8 is still one). A mirrored 3 is an epsilon, a mirrored 9
  a P with a tail: near misses that stick characters and scribbles do not show.
- drawn: a SHARE of the bank replaced by real characters drawn by people, those of the --non-digits folder whose
  alphabet (the file name's start, as in `Greek_character03_...png`) is one of --alphabets, less any --digit-like
  ones; the run is then read on the other alphabets only. Outlier exposure with real negatives, measured on
  alphabets the network never saw, as the issue's hidden set is: how far would a bank of real drawings go?
- ensemble: no training. Reads best.pt files alone, then together (Lakshminarayanan et al., 2017): the mean of their
  calibrated logits, familiarities and evidences, refused under thresholds fitted on the first checkpoint's validation
  digits as `lenet.refusal.rule.thresholds` does; and each way with test-time augmentation too, the mean over the image and its
  four one-pixel shifts. The other models trained on some of those validation digits (each seed splits MNIST its own
  way), which look more familiar to them than new digits would: the ensemble's thresholds sit a little high, so its
  refusal is if anything an overestimate. Three models cost three trainings; the views cost five readings.
- layers: no training. Reads best.pt files with the familiarity computed on other layers' features (conv: the 400
  numbers `LeNet5.features` gives, which best.pt stores; fc1: 120; fc2: 84; logits: 10), each against the same
  10,000 training digits and fitted with the evidence as `lenet.refusal.rule.thresholds` does (99% of validation digits kept).

    python benchmarks/outlier_variants.py elastic --pixels 1.5 --non-digits ../shared/data/not_digits_dev \\
        --digits ../shared/data/real_digits_dev --scribbles 16 --digit-like benchmarks/digit_like_dev.txt
    python benchmarks/outlier_variants.py turned --share 0.33 --rotate --non-digits ... (as above)
    python benchmarks/outlier_variants.py drawn --alphabets Balinese Korean --non-digits ... (as above)
    python benchmarks/outlier_variants.py ensemble --non-digits ... --digits ... runs/*/checkpoints/best.pt
    python benchmarks/outlier_variants.py layers --non-digits ... --digits ... runs/*/checkpoints/best.pt

elastic, turned and drawn take every option of outlier_exposure.py after their own (see its --help). The results,
and why none became the default: benchmarks/RESULTS.md, "Tried and not adopted".
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
import lenet.data  # noqa: E402
from benchmarks import outlier_exposure  # noqa: E402
from lenet.checkpoint import load_checkpoint  # noqa: E402
from lenet.cli import run_command  # noqa: E402
from lenet.config import Config  # noqa: E402
from lenet.data import load_splits  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.inference.images import image_files_in  # noqa: E402
from lenet.inference.predict import UNSURE_BELOW, load_model, prepare_image  # noqa: E402
from lenet.inference.preprocess import PreprocessError, preprocess  # noqa: E402
from lenet.refusal import OutlierExposure, Refusal  # noqa: E402
from lenet.refusal.exposure import BANK  # noqa: E402
from lenet.refusal.rule import FAMILIAR, evidence, familiarity, threshold, thresholds  # noqa: E402

TURNABLE = (2, 3, 4, 6, 7, 9)
LAYERS = ("conv", "fc1", "fc2", "logits")


def elastic_grid(affine_grid, pixels: float, grid: int, generator: torch.Generator):
    """`lenet.data.affine_grid` with a smooth random displacement added to each image's sampling grid."""
    def displaced(theta: torch.Tensor, height: int, width: int) -> torch.Tensor:
        base = affine_grid(theta, height, width)
        noise = torch.randn(len(theta), 2, grid, grid, generator=generator) * (2 * pixels / width)  # in -1..1 units
        field = F.interpolate(noise.to(base), size=(height, width), mode="bicubic", align_corners=True)
        return base + field.permute(0, 2, 3, 1)
    return displaced


def turned_digits(images: torch.Tensor, labels: torch.Tensor, count: int, rotate: bool,
                  generator: torch.Generator) -> torch.Tensor:
    """`count` of the training `images` (N, 1, 28, 28) of TURNABLE classes, mirrored left to right; with `rotate`,
    the second half turned a quarter instead (half of those each way)."""
    pool = torch.nonzero(torch.isin(labels.cpu(), torch.tensor(TURNABLE))).flatten()
    if count > len(pool):
        raise LenetError(f"only {len(pool):,} training digits can be turned, {count:,} asked: lower --share.")
    picks = pool[torch.randperm(len(pool), generator=generator)[:count]].to(images.device)
    mirrored = images[picks].flip(-1)
    if not rotate:
        return mirrored
    half = count // 2
    turned = images[picks[half:]]
    quarter = len(turned) // 2
    return torch.cat([mirrored[:half], torch.rot90(turned[:quarter], 1, (-2, -1)),
                      torch.rot90(turned[quarter:], -1, (-2, -1))])


def with_share_replaced(for_run, share: float, seed: int, replacements):
    """`OutlierExposure.for_run` with a `share` of the bank replaced by `replacements(config, splits, count,
    generator)`, (count, 1, 28, 28) normalized images; the generator is seeded `seed` + the run's seed, and after the
    replacements it picks which of the drawn non-digits stay."""
    def drawn(config, splits):
        outliers = for_run(config, splits)
        if outliers is None:
            return None
        count = int(BANK * share)
        generator = torch.Generator().manual_seed(seed + config.seed)
        replaced = replacements(config, splits, count, generator).to(outliers.bank)
        kept = torch.randperm(BANK, generator=generator)[:BANK - count].to(outliers.bank.device)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        outliers.bank = torch.cat([outliers.bank[kept], replaced]).contiguous(memory_format=memory_format)
        return outliers
    return drawn


def with_turned_digits(for_run, share: float, rotate: bool):
    """`OutlierExposure.for_run` with a `share` of the bank replaced by `turned_digits`, drawn from the run's seed."""
    return with_share_replaced(for_run, share, 5000, lambda config, splits, count, generator: turned_digits(
        splits.train.images, splits.train.labels, count, rotate, generator))


def alphabet(path: Path) -> str:
    """The alphabet an Omniglot file is of: its name up to `_character` (`Early_Aramaic_character01_...png`)."""
    return path.name.split("_character")[0]


def split_by_alphabet(files: list[Path], alphabets: list[str], digit_like: set[str]) -> tuple[list[Path], list[Path]]:
    """`files` split into those to train beside (of `alphabets`, none named in `digit_like`) and those to read (of
    the other alphabets, all of them)."""
    known = {alphabet(path) for path in files}
    if missing := sorted(set(alphabets) - known):
        raise LenetError(f"no image of the alphabet {missing[0]!r} in the --non-digits folder: pick among "
                         f"{', '.join(sorted(known))}.")
    shown = [path for path in files if alphabet(path) in alphabets and path.name not in digit_like]
    held_out = [path for path in files if alphabet(path) not in alphabets]
    if not held_out:
        raise LenetError("every alphabet is in --alphabets, so none is left to read: leave at least one out.")
    return shown, held_out


def drawn_images(files: list[Path], mean: float, std: float) -> torch.Tensor:
    """(N, 1, 28, 28) normalized images of `files`, prepared as `lenet-predict` prepares any image; blank ones
    skipped."""
    images = []
    for path in files:
        try:
            images.append(preprocess(path, mean, std).tensor)
        except PreprocessError:
            continue
    return torch.cat(images)


def with_drawn(for_run, files: list[Path], share: float):
    """`OutlierExposure.for_run` with a `share` of the bank replaced by the drawn `files` (repeated as needed,
    in an order drawn from the run's seed; the bank's augmentation varies each copy)."""
    def repeated(config, splits, count, generator):
        images = drawn_images(files, splits.mean, splits.std)
        return images[torch.randperm(count, generator=generator) % len(images)]
    return with_share_replaced(for_run, share, 6000, repeated)


def read_held_out(rest: list[str], args: argparse.Namespace) -> int:
    """`outlier_exposure.main(rest)` training beside the drawn characters of `args.alphabets` (a `share` of the bank;
    0 trains the default recipe) and reading only the other alphabets' characters."""
    found = argparse.ArgumentParser(add_help=False)
    found.add_argument("--non-digits", type=Path, default=None)
    found.add_argument("--digit-like", type=Path, default=None)
    known, _ = found.parse_known_args(rest)
    if known.non_digits is None:
        return outlier_exposure.main(rest)  # which says what is missing

    def body() -> int:
        files = image_files_in(known.non_digits)
        like = set() if known.digit_like is None else outlier_exposure.digit_like_names(known.digit_like, files)
        shown, held_out = split_by_alphabet(files, args.alphabets, like)
        print(f"Training beside {len(shown) if args.share else 0} drawn characters of {', '.join(args.alphabets)} "
              f"({args.share:.0%} of the bank); reading the {len(held_out)} of the other alphabets.\n", flush=True)
        if args.share:
            OutlierExposure.for_run = staticmethod(with_drawn(OutlierExposure.for_run, shown, args.share))
        with tempfile.TemporaryDirectory() as folder:
            for path in held_out:
                (Path(folder) / path.name).symlink_to(path.resolve())
            index = rest.index("--non-digits") if "--non-digits" in rest else None
            changed = ([*rest[:index], "--non-digits", folder, *rest[index + 2:]] if index is not None
                       else [argument for argument in rest if not argument.startswith("--non-digits=")]
                       + ["--non-digits", folder])
            return outlier_exposure.main(changed)
    return run_command(body)


SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # the image, and one pixel down, up, right, left


@torch.no_grad()
def read_scores(predictor, images: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(familiarity, evidence, calibrated logits) of normalized `images` under `predictor`, each the mean over the
    first `views` of SHIFTS (a shifted-in border is the background: pixel 0, normalized)."""
    network, scores = predictor.network.eval(), []
    background = -predictor.mean / predictor.std
    for dy, dx in SHIFTS[:views]:
        shifted = torch.full_like(images, background)
        rows, columns = slice(max(dy, 0), 28 + min(dy, 0)), slice(max(dx, 0), 28 + min(dx, 0))
        shifted[..., rows, columns] = images[..., max(-dy, 0):28 - max(dy, 0), max(-dx, 0):28 - max(dx, 0)]
        features = torch.cat([network.features(shifted[start:start + 2048]) for start in range(0, len(images), 2048)])
        logits = network.head(features).float() / predictor.temperature
        scores.append((familiarity(features, predictor.refusal.familiar), evidence(logits), logits))
    return tuple(torch.stack(parts).mean(0) for parts in zip(*scores))


def read_ensemble(args: argparse.Namespace) -> int:
    labels, digits, others = outlier_exposure.read_folders(args.digits, args.non_digits)
    like = set() if args.digit_like is None else outlier_exposure.digit_like_names(args.digit_like, others)
    unlike = torch.tensor([path.name not in like for path in others])
    truth = torch.tensor([labels[path.name] for path in digits])
    predictors = [load_model(checkpoint) for checkpoint in args.checkpoints]
    for checkpoint, predictor in zip(args.checkpoints, predictors):
        if predictor.refusal is None:
            raise LenetError(f"{checkpoint} stores no training digits' features to compare with: pass checkpoints "
                             "trained by this version of lenet.")
    first = Config.from_dict(load_checkpoint(args.checkpoints[0])["config"])
    validation = load_splits(first.dataset, args.data_dir or first.data_dir, first.val_size, seed=first.seed).val
    shown = [{"val": validation.images, "non": torch.cat([prepare_image(path, predictor).tensor for path in others]),
              "real": torch.cat([prepare_image(path, predictor).tensor for path in digits])} for predictor in predictors]
    print("| models | views | non-digits: not a digit | not drawn like a digit: not a digit | real digits read right |"
          "\n|---|---|---|---|---|")
    for views in (1, len(SHIFTS)):
        read = [{name: read_scores(predictor, images, views) for name, images in inputs.items()}
                for predictor, inputs in zip(predictors, shown)]
        groups = [(str(checkpoint), [one]) for checkpoint, one in zip(args.checkpoints, read)]
        for name, members in groups + [(f"ensemble of {len(read)}", read)]:
            scores = {part: [torch.stack(values).mean(0) for values in zip(*(member[part] for member in members))]
                      for part in ("val", "non", "real")}
            rule = Refusal(predictor.refusal.familiar, *thresholds(*scores["val"][:2]))
            refused = {part: rule.refuses(*scores[part][:2]) for part in ("non", "real")}
            probabilities = torch.softmax(scores["real"][2], 1)
            right = int(((probabilities.max(1).values >= UNSURE_BELOW) & (probabilities.argmax(1) == truth)
                         & ~refused["real"]).sum())
            print(f"| {name} | {views} | {refused['non'].float().mean():.1%} | "
                  f"{refused['non'][unlike].float().mean():.1%} | {right}/{len(digits)} ({right / len(digits):.1%}) |",
                  flush=True)
    return 0


@torch.no_grad()
def layer_features(network: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each LAYERS' features of normalized `images`, in batches."""
    parts: dict[str, list[torch.Tensor]] = {layer: [] for layer in LAYERS}
    for start in range(0, len(images), 2048):
        conv = network.features(images[start:start + 2048])
        fc1 = F.relu(network.fc1(conv))
        fc2 = F.relu(network.fc2(fc1))
        for layer, value in zip(LAYERS, (conv, fc1, fc2, network.fc3(fc2))):
            parts[layer].append(value.float())
    return {layer: torch.cat(values) for layer, values in parts.items()}


def read_layers(args: argparse.Namespace) -> int:
    labels, digits, others = outlier_exposure.read_folders(args.digits, args.non_digits)
    truth = torch.tensor([labels[path.name] for path in digits])
    print("| checkpoint | layer | non-digits: not a digit (with the evidence) | real digits read right "
          "| non-digits: not a digit (alone) | real digits read right (alone) |\n|---|---|---|---|---|---|")
    for checkpoint in args.checkpoints:
        predictor = load_model(checkpoint)
        config = Config.from_dict(load_checkpoint(checkpoint)["config"])
        splits = load_splits(config.dataset, args.data_dir or config.data_dir, config.val_size, seed=config.seed)
        network = predictor.network.eval()
        picks = torch.randperm(len(splits.train.images), generator=torch.Generator().manual_seed(0))[:FAMILIAR]
        familiar = {layer: F.normalize(value, dim=1)
                    for layer, value in layer_features(network, splits.train.images[picks]).items()}
        shown = {"val": splits.val.images,
                 "non": torch.cat([prepare_image(path, predictor).tensor for path in others]),
                 "real": torch.cat([prepare_image(path, predictor).tensor for path in digits])}
        features = {name: layer_features(network, images) for name, images in shown.items()}
        scores = {name: evidence(value["logits"] / predictor.temperature) for name, value in features.items()}
        probabilities = torch.softmax(features["real"]["logits"] / predictor.temperature, 1)
        right = (probabilities.max(1).values >= UNSURE_BELOW) & (probabilities.argmax(1) == truth)
        for layer in LAYERS:
            known = {name: familiarity(value[layer], familiar[layer]) for name, value in features.items()}
            rule = Refusal(familiar[layer], *thresholds(known["val"], scores["val"]))
            refused = {name: rule.refuses(known[name], scores[name]) for name in ("non", "real")}
            alone = threshold(known["val"])
            read, read_alone = int((right & ~refused["real"]).sum()), int((right & (known["real"] >= alone)).sum())
            print(f"| {checkpoint} | {layer} | {refused['non'].float().mean():.1%} | {read}/{len(digits)} "
                  f"| {(known['non'] < alone).float().mean():.1%} | {read_alone}/{len(digits)} |", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    variants = parser.add_subparsers(dest="variant", required=True)
    elastic = variants.add_parser("elastic", help="an elastic distortion on top of the affine warp")
    elastic.add_argument("--pixels", type=float, default=1.5, help="displacement, standard deviation in px")
    elastic.add_argument("--grid", type=int, default=4, help="random displacements along each side")
    turned = variants.add_parser("turned", help="mirrored (and quarter-turned) digits in the non-digit bank")
    turned.add_argument("--share", type=float, default=0.33, help="the share of the bank they replace")
    turned.add_argument("--rotate", action="store_true", help="turn half of them a quarter instead of mirroring")
    drawn = variants.add_parser("drawn", help="people's drawn characters of some alphabets in the non-digit bank, "
                                              "read on the others")
    drawn.add_argument("--alphabets", nargs="+", required=True, help="the alphabets to train beside")
    drawn.add_argument("--share", type=float, default=0.5, help="the share of the bank they replace (0: none)")
    ensemble = variants.add_parser("ensemble", help="checkpoints read alone and together, with and without "
                                                    "shifted views")
    ensemble.add_argument("checkpoints", type=Path, nargs="+", help="best.pt files (two or more)")
    layers = variants.add_parser("layers", help="familiarity on other layers' features, on trained checkpoints")
    layers.add_argument("checkpoints", type=Path, nargs="+", help="best.pt files")
    for reader in (ensemble, layers):
        reader.add_argument("--non-digits", type=Path, required=True, help="a folder of images that are not digits")
        reader.add_argument("--digits", type=Path, required=True, help="a folder of real digits with a labels.json")
        reader.add_argument("--data-dir", default=None, help="where MNIST lives (default: the checkpoint's, else "
                                                             "$LENET_DATA_DIR, else ./data)")
    ensemble.add_argument("--digit-like", type=Path, default=None,
                          help="a file naming the non-digits drawn exactly like a digit, one a line")
    args, rest = parser.parse_known_args(argv)
    if args.variant in ("layers", "ensemble"):
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        if args.variant == "ensemble" and len(args.checkpoints) < 2:
            parser.error("an ensemble needs two checkpoints or more")
        return run_command(lambda: (read_layers if args.variant == "layers" else read_ensemble)(args))
    if args.variant == "drawn":
        if not 0 <= args.share <= 1:
            parser.error(f"--share must be in [0, 1], got {args.share}")
        return read_held_out(rest, args)
    if args.variant == "elastic":
        if not (0 < args.pixels <= 10 and 2 <= args.grid <= 28):
            parser.error("--pixels must be in (0, 10] and --grid between 2 and 28")
        lenet.data.affine_grid = elastic_grid(lenet.data.affine_grid, args.pixels, args.grid,
                                              torch.Generator().manual_seed(0))
    else:
        if not 0 < args.share <= 1:
            parser.error(f"--share must be in (0, 1], got {args.share}")
        OutlierExposure.for_run = staticmethod(with_turned_digits(OutlierExposure.for_run, args.share, args.rotate))
    return outlier_exposure.main(rest)


if __name__ == "__main__":
    sys.exit(main())
