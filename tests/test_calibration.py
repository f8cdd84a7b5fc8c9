"""Honest confidence: temperature scaling lowers the calibration error, the temperature travels in the checkpoint,
and predictions use it."""

from __future__ import annotations

import pytest
import torch

from benchmarks.calibration import KINDS, non_digits
from lenet.calibration import expected_calibration_error, fit_temperature, reliability
from lenet.checkpoint import load_checkpoint, save_checkpoint
from lenet.inference.predict import load_model, predict


def overconfident(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of a classifier right about 80% of the time but sharpened 4x, so it claims more than that."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    logits = torch.randn(n, 10, generator=generator)
    logits[torch.arange(n), labels] += 2.5
    return logits * 4, labels


def test_temperature_fitted_on_one_half_lowers_the_error_on_the_other():
    fit_logits, fit_labels = overconfident(4000, seed=0)
    held_logits, held_labels = overconfident(4000, seed=1)
    temperature = fit_temperature(fit_logits, fit_labels)
    assert temperature > 1.3  # an over-confident model is cooled down
    before = expected_calibration_error(held_logits.softmax(1), held_labels)
    after = expected_calibration_error((held_logits / temperature).softmax(1), held_labels)
    assert before > 0.05 and after < before / 3
    assert (held_logits / temperature).argmax(1).equal(held_logits.argmax(1))  # the answers do not change


def test_reliability_bins_cover_every_sample_and_a_calibrated_model_scores_near_zero():
    generator = torch.Generator().manual_seed(0)
    confidence = torch.rand(20000, generator=generator) * 0.5 + 0.5
    labels = torch.zeros(20000, dtype=torch.long)
    right = torch.rand(20000, generator=generator) < confidence  # right exactly as often as it claims
    probabilities = torch.stack([torch.where(right, confidence, 1 - confidence),
                                 torch.where(right, 1 - confidence, confidence)], 1)
    table = reliability(probabilities, labels)
    assert sum(table["share"]) == pytest.approx(1.0)
    assert expected_calibration_error(probabilities, labels) < 0.02


def test_training_stores_the_temperature_and_predictions_use_it(tiny_checkpoint, tmp_path):
    checkpoint = load_checkpoint(tiny_checkpoint)
    assert 0 < checkpoint["temperature"] < 20
    predictor = load_model(tiny_checkpoint)
    assert predictor.temperature == checkpoint["temperature"]
    image = torch.zeros(28, 28)
    image[6:22, 12:16] = 1.0
    calibrated, = predict(predictor, image.numpy())
    older = save_checkpoint({k: v for k, v in checkpoint.items() if k != "temperature"}, tmp_path / "older.pt")
    uncalibrated_predictor = load_model(older)  # a checkpoint from before calibration loads with none
    assert uncalibrated_predictor.temperature == 1.0 and "uncalibrated" in uncalibrated_predictor.summary()
    uncalibrated, = predict(uncalibrated_predictor, image.numpy())
    logits = uncalibrated_predictor.network(calibrated_input(predictor, image))
    expected = (logits / predictor.temperature).softmax(1)[0].tolist()
    assert calibrated.probabilities == pytest.approx(expected, abs=1e-5)
    assert uncalibrated.probabilities == pytest.approx(logits.softmax(1)[0].tolist(), abs=1e-5)


def calibrated_input(predictor, image):
    from lenet.inference.preprocess import preprocess
    with torch.no_grad():
        return preprocess(image.numpy(), predictor.mean, predictor.std).tensor


def test_the_non_digit_set_is_reproducible_and_holds_every_kind():
    first, second = non_digits(4, seed=3), non_digits(4, seed=3)
    assert [kind for kind, _ in first] == [kind for kind in KINDS for _ in range(4)]
    assert all(a.tobytes() == b.tobytes() for (_, a), (_, b) in zip(first, second))
