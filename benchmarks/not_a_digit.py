"""Can a trained model tell a digit from something that is not one, without retraining? Post-hoc detectors side by
side on drawn non-digits and on people's real digits.

Each detector scores how digit-like an image is; its threshold is chosen on half of MNIST's validation split so
that a given share of validation digits is kept (never on the test set, never on the sets it is judged on):

- `msp`: the calibrated maximum softmax probability (Hendrycks and Gimpel, 2017);
- `energy`: T * logsumexp(logits / T) (Liu et al., 2020);
- `mahalanobis`: minus the smallest Mahalanobis distance of the 84 penultimate features to a class mean, with one
  covariance shared by the classes (Lee et al., 2018), fitted on the other half of validation;
- `knn`: the cosine similarity of the penultimate features to the k-th nearest validation digit (Sun et al., 2022).

    python benchmarks/not_a_digit.py --checkpoint runs/<run>/checkpoints/best.pt \\
        --non-digits DIR_OF_NON_DIGIT_IMAGES --digits DIR_WITH_LABELS_JSON

Prints, for each detector and kept share: the non-digits refused, the real digits read right (kept and right),
and the MNIST test digits kept and right.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout
from lenet.cli import run_command  # noqa: E402
from lenet.data import load_splits  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.files import require_regular_file  # noqa: E402
from lenet.inference.images import image_files_in  # noqa: E402
from lenet.inference.predict import Predictor, load_model  # noqa: E402
from lenet.inference.preprocess import PreprocessError, preprocess  # noqa: E402
from lenet.model import LeNet5  # noqa: E402

KEEP = (0.99, 0.995, 0.999)  # shares of validation digits each threshold keeps


def penultimate(network: LeNet5, images: torch.Tensor) -> torch.Tensor:
    """(N, 84) features before the last layer: LeNet5.forward up to fc2."""
    x = F.relu(F.max_pool2d(network.conv1(images), 2))
    x = F.relu(F.max_pool2d(network.conv2(x), 2))
    return F.relu(network.fc2(F.relu(network.fc1(torch.flatten(x, 1)))))


def prepared_folder(folder: Path, predictor: Predictor, labels: dict[str, int] | None) -> tuple[torch.Tensor, np.ndarray, int]:
    """The folder's images as model inputs, their labels (-1 without), and how many preprocessing refused."""
    inputs, targets, refused = [], [], 0
    for path in image_files_in(folder):
        if labels is not None and path.name not in labels:
            continue
        try:
            inputs.append(preprocess(path, predictor.mean, predictor.std).tensor)
        except PreprocessError:
            refused += 1
            continue
        targets.append(-1 if labels is None else labels[path.name])
    if not inputs:
        raise LenetError(f"{folder} holds no image preprocessing accepts: pass a folder of images.")
    return torch.cat(inputs), np.array(targets), refused


def detectors(network: LeNet5, temperature: float, fit_features: torch.Tensor,
              fit_labels: torch.Tensor, k: int = 10) -> dict[str, Callable[[torch.Tensor], np.ndarray]]:
    """Score functions of penultimate features, higher meaning more digit-like."""
    means = torch.stack([fit_features[fit_labels == c].mean(0) for c in range(network.fc3.out_features)])
    centred = fit_features - means[fit_labels]
    precision = torch.linalg.inv(centred.T @ centred / len(centred) + 1e-3 * torch.eye(centred.shape[1]))
    reference = F.normalize(fit_features, dim=1)

    def mahalanobis(features: torch.Tensor) -> np.ndarray:
        offsets = features[:, None, :] - means[None]
        return -torch.einsum("nci,ij,ncj->nc", offsets, precision, offsets).min(1).values.numpy()

    return {
        "msp": lambda f: (network.fc3(f) / temperature).softmax(1).max(1).values.numpy(),
        "energy": lambda f: (temperature * torch.logsumexp(network.fc3(f) / temperature, 1)).numpy(),
        "mahalanobis": mahalanobis,
        "knn": lambda f: (F.normalize(f, dim=1) @ reference.T).topk(k, 1).values[:, -1].numpy(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="the model to judge (a best.pt)")
    parser.add_argument("--non-digits", type=Path, required=True, help="a folder of images that are not digits")
    parser.add_argument("--digits", type=Path, required=True, help="a folder of real digits with a labels.json")
    parser.add_argument("--data-dir", default=os.environ.get("LENET_DATA_DIR"),
                        help="where MNIST lives (default: $LENET_DATA_DIR, else ./data)")
    args = parser.parse_args(argv)

    def body() -> int:
        torch.set_num_threads(1)
        predictor = load_model(args.checkpoint)
        network = predictor.network.eval()
        labels_file = require_regular_file(args.digits / "labels.json", "labels file", "pass a folder with a labels.json")
        labels = json.loads(labels_file.read_text(encoding="utf-8"))
        digits, digit_labels, digits_refused = prepared_folder(args.digits, predictor, labels)
        others, _, others_refused = prepared_folder(args.non_digits, predictor, None)
        splits = load_splits("mnist", args.data_dir, 5000, 1000)
        with torch.inference_mode():
            val = torch.cat([penultimate(network, images) for images, _ in splits.val])
            test = torch.cat([penultimate(network, images) for images, _ in splits.test])
            half = len(val) // 2
            scores = detectors(network, predictor.temperature, val[:half], splits.val.labels[:half])
            features = {"real": penultimate(network, digits), "non": penultimate(network, others)}
            read = {"real": network.fc3(features["real"]).argmax(1).numpy(), "test": network.fc3(test).argmax(1).numpy()}
            total_non, total_real = len(others) + others_refused, len(digits) + digits_refused
            print(f"| detector | validation kept | non-digits refused (of {total_non}) | real digits read right "
                  f"(of {total_real}) | MNIST test kept and right |\n|---|---|---|---|---|")
            for name, score in scores.items():
                validation, on_test = score(val[half:]), score(test)
                on_real, on_non = score(features["real"]), score(features["non"])
                for keep in KEEP:
                    threshold = np.quantile(validation, 1 - keep)
                    refused = int((on_non < threshold).sum()) + others_refused
                    right = int(((on_real >= threshold) & (read["real"] == digit_labels)).sum())
                    test_right = ((on_test >= threshold) & (read["test"] == splits.test.labels.numpy())).mean()
                    print(f"| {name} | {keep:.1%} | {refused / total_non:.1%} | {right} ({right / total_real:.1%}) "
                          f"| {test_right:.2%} |")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
