"""Inference: load a trained checkpoint and predict the digit in users' images (the `lenet-predict` command is
`lenet.cli.predict`).

The model answers with a probability for each class, calibrated with the temperature stored in the
checkpoint (see `lenet.calibration`), and one of three outcomes:
    "digit"        the top class, at UNSURE_BELOW or more;
    "unsure"       the image looks like a digit but the top probability is below UNSURE_BELOW;
    "not a digit"  the image's familiarity, how much its features look like those of the training digits kept
                   in the checkpoint, or its evidence, how strongly any digit answers, is under the threshold the
                   checkpoint's refusal stores (`lenet.refusal.Refusal`), whatever the softmax says.
The label is None unless the outcome is "digit", rather than a confident-looking wrong digit.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from lenet.checkpoint import classes_of, load_checkpoint, model_from_checkpoint, refusal_of, temperature_of
from lenet.errors import LenetError
from lenet.files import checked_path, explain_os_error, printable
from lenet.inference.images import image_files_in
from lenet.inference.preprocess import IMAGE_EXTENSIONS, ImageLike, Preprocessed, PreprocessError, preprocess
from lenet.model import LeNet5
from lenet.refusal.rule import Refusal, evidence, familiarity
from lenet.runs import RUNS_DIR, checkpoint_name, default_checkpoint, run_test_accuracy

UNSURE_BELOW = 0.5  # a top probability under this is reported as "unsure", not as a digit
DIGIT, UNSURE, NOT_A_DIGIT = "digit", "unsure", "not a digit"  # the three outcomes, as --json writes them
BATCH_SIZE = 1024  # images per forward pass in `classify`; bounds memory for large folders
SMALL_BATCH = 16  # up to this many images, one CPU thread is faster than several (see `one_thread`)


@dataclass
class Predictor:
    """A trained model ready for inference, with the constants its inputs must be prepared with."""

    network: LeNet5  # in eval mode, on `device`
    mean: float  # training-set pixel mean (pixels in [0, 1])
    std: float  # training-set pixel std
    classes: list[str]
    device: torch.device
    checkpoint_path: Path
    temperature: float = 1.0  # logits are divided by it before the softmax (1.0: an uncalibrated checkpoint)
    refusal: Refusal | None = None  # decides "not a digit", its features on `device` (None: nothing is refused)
    epoch: int | None = None  # the training epoch the checkpoint was saved at
    test_accuracy: float | None = None  # from the run's metrics.json, when it has one
    loaded_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def summary(self) -> str:
        """Which model this is, without an absolute path: "mine/checkpoints/best.pt (epoch 3, 99.12% test accuracy)"."""
        name = checkpoint_name(self.checkpoint_path)
        facts = [f"epoch {self.epoch}"] if self.epoch is not None else []
        if self.test_accuracy is not None:
            facts.append(f"{self.test_accuracy:.2%} test accuracy")
        if self.temperature == 1.0:
            facts.append("uncalibrated")
        return printable(f"{name} ({', '.join(facts)})" if facts else name)


@dataclass
class Prediction:
    """The model's answer for one image."""

    label: int | None  # the class index, or None when the outcome is not "digit"
    probability: float  # the top class's probability
    probabilities: list[float]  # one per class, summing to 1
    image: np.ndarray = field(repr=False)  # (28, 28) float32 in [0, 1]: what the model saw
    outcome: str = DIGIT  # DIGIT, UNSURE or NOT_A_DIGIT
    familiarity: float | None = None  # how much it looks like the training digits (None: nothing is refused)
    evidence: float | None = None  # logsumexp(logits / T): how strongly any digit answers (`lenet.refusal`)

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        """The k most likely (class index, probability) pairs, most likely first."""
        order = sorted(range(len(self.probabilities)), key=self.probabilities.__getitem__, reverse=True)
        return [(index, self.probabilities[index]) for index in order[:k]]


def load_model(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               runs_dir: str | os.PathLike = RUNS_DIR) -> Predictor:
    """Load a checkpoint (default: best.pt of the newest completed run, see `lenet.runs`) safely, ready for `predict`."""
    path = Path(path) if path is not None else default_checkpoint(runs_dir)
    try:
        device = torch.device(device)
        checkpoint = load_checkpoint(path, map_location=device)
        network = model_from_checkpoint(checkpoint).to(device)
    except (RuntimeError, AssertionError) as error:  # an unknown or absent device
        raise LenetError(f"device {device} cannot be used ({str(error).splitlines()[0]}): use cpu.") from None
    normalization = checkpoint["normalization"]
    refusal = refusal_of(checkpoint)
    return Predictor(network=network, mean=float(normalization["mean"]), std=float(normalization["std"]),
                     classes=classes_of(checkpoint), device=device, checkpoint_path=path,
                     temperature=temperature_of(checkpoint), refusal=None if refusal is None else refusal.to(device),
                     epoch=checkpoint.get("epoch"), test_accuracy=run_test_accuracy(path))


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """Run the block on one CPU thread, then restore torch's setting.

    A few 28x28 images are too little work to share: waking the other threads costs more than they
    save, and on a busy machine waiting for a descheduled thread adds tens of milliseconds.
    """
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def classify(predictor: Predictor, inputs: Sequence[Preprocessed]) -> list[Prediction]:
    """Predictions for already preprocessed images, batched under inference mode."""
    predictions = []
    for start in range(0, len(inputs), BATCH_SIZE):
        chunk = inputs[start:start + BATCH_SIZE]
        batch = chunk[0].tensor if len(chunk) == 1 else torch.cat([item.tensor for item in chunk])
        with torch.inference_mode(), one_thread(len(chunk) <= SMALL_BATCH and predictor.device.type == "cpu"):
            features = predictor.network.features(batch.to(predictor.device))
            logits = predictor.network.head(features).float() / predictor.temperature
            probabilities = torch.softmax(logits, dim=1).cpu()  # (B, classes)
            evidences = evidence(logits)
            if predictor.refusal is None:
                scores, refused = [None] * len(chunk), [False] * len(chunk)
            else:
                familiarities = familiarity(features, predictor.refusal.familiar)
                refused = predictor.refusal.refuses(familiarities, evidences).tolist()
                scores = familiarities.cpu().tolist()
            energies = evidences.cpu().tolist()
        for item, row, score, energy, refused_one in zip(chunk, probabilities.tolist(), scores, energies, refused):
            top = max(range(len(row)), key=row.__getitem__)
            outcome = NOT_A_DIGIT if refused_one else UNSURE if row[top] < UNSURE_BELOW else DIGIT
            predictions.append(Prediction(label=top if outcome == DIGIT else None, probability=row[top],
                                          probabilities=row, image=item.image, outcome=outcome, familiarity=score,
                                          evidence=energy))
    return predictions


SINGLE_IMAGE_TYPES = (str, os.PathLike, bytes, bytearray, Image.Image, np.ndarray, torch.Tensor)


def predict(predictor: Predictor, images: Sequence[ImageLike] | ImageLike) -> list[Prediction]:
    """One Prediction per image (path, bytes, PIL image or array); PreprocessError on a bad image."""
    if isinstance(images, SINGLE_IMAGE_TYPES):
        images = [images]  # one image; an array is always one image, never a batch
    return classify(predictor, [prepare_image(image, predictor) for image in images])


def prepare_image(image: ImageLike, predictor: Predictor) -> Preprocessed:
    """`preprocess` with the predictor's mean and std; an OS error about an image file (a name too long,
    permission denied, an I/O error) becomes a PreprocessError sentence, never a traceback."""
    try:
        return preprocess(image, predictor.mean, predictor.std)
    except OSError as error:
        if not isinstance(image, (str, os.PathLike)):
            raise
        raise PreprocessError(explain_os_error(Path(image), error, "digit image")) from None


def expand_inputs(arguments: Sequence[str]) -> list[tuple[str, str | None]]:
    """(file, None) for each file argument and each image inside a folder; (argument, error sentence) for a folder
    without images or a path the OS refuses (a name too long, permission denied, an I/O error)."""
    inputs = []
    for argument in arguments:
        try:
            path = checked_path(argument, "digit image")
            if not path.is_dir():
                inputs.append((argument, None))
                continue
            images = image_files_in(path)
        except LenetError as error:
            inputs.append((argument, str(error)))
            continue
        except OSError as error:  # a folder that cannot be listed
            inputs.append((argument, explain_os_error(Path(argument), error, "folder of images")))
            continue
        if images:
            inputs.extend((str(image), None) for image in images)
        else:
            inputs.append((argument, f"{argument} holds no images ({', '.join(IMAGE_EXTENSIONS)}): "
                                     "pass a folder of images or the image files themselves."))
    return inputs


def as_json(file: str | None, outcome: Prediction | str) -> dict:
    """The --json object for one input: its prediction, or its error sentence (names made valid UTF-8).

    "outcome" is "digit", "unsure" or "not a digit" (null for an error); "prediction" is the digit, null unless the
    outcome is "digit"; "familiarity" is how much the image looks like the training digits and "evidence" how strongly
    any digit answers (`lenet.refusal`): under either of the checkpoint's thresholds the outcome is "not a digit"
    ("familiarity" is null for a checkpoint without features to compare with)."""
    file = printable(file) if file is not None else None
    if isinstance(outcome, str):
        return {"file": file, "outcome": None, "prediction": None, "probability": None, "probabilities": None,
                "familiarity": None, "evidence": None, "error": printable(outcome)}
    return {"file": file, "outcome": outcome.outcome, "prediction": outcome.label,
            "probability": round(outcome.probability, 6), "probabilities": [round(p, 6) for p in outcome.probabilities],
            "familiarity": None if outcome.familiarity is None else round(outcome.familiarity, 4),
            "evidence": None if outcome.evidence is None else round(outcome.evidence, 4), "error": None}
