"""Answering "not a digit" (lenet.refusal): the familiarity and evidence, the refusal fitted on validation and stored
in best.pt, and the scribbles and stick characters drawn as MNIST's digits are drawn, served beside each training
batch (outlier exposure)."""

import dataclasses

import pytest
import torch

from lenet.checkpoint import load_checkpoint
from lenet.config import PRESETS, Config, ConfigError
from lenet.checkpoint import refusal_of
from lenet.data import CENTRE, DIGIT_SIZE, FIELD_SIZE, Augmentation, load_splits
from lenet.inference.predict import NOT_A_DIGIT, classify, load_model, predict
from lenet.inference.preprocess import Preprocessed
from lenet.model import LeNet5
from lenet.refusal import OutlierExposure, Refusal
from lenet.refusal.exposure import BANK, uniform_loss
from lenet.refusal.non_digits import non_digits, scribbles, sticks
from lenet.refusal.rule import (FAMILIAR, NEIGHBOURS, evidence, familiar_features, familiarity, image_familiarity,
                                threshold, thresholds)
from lenet.train import build_run, fit, train_one_epoch

FIELD, BOX = FIELD_SIZE, DIGIT_SIZE
DRAWERS = [scribbles, sticks, non_digits]


@pytest.mark.parametrize("draw", DRAWERS)
def test_scribbles_and_sticks_are_white_strokes_on_black_in_a_28x28_field(draw):
    images = draw(300, torch.Generator().manual_seed(0))
    assert images.shape == (300, FIELD, FIELD) and images.dtype == torch.float32
    assert images.min() == 0 and images.max() == 1
    ink = images.flatten(1).sum(1)
    assert (ink > 20).all()  # every scribble has strokes: a 20-px line of a 2.3 px pen is ~46
    border = images[:, 0].sum(1) + images[:, -1].sum(1) + images[:, :, 0].sum(1) + images[:, :, -1].sum(1)
    assert (border == 0).float().mean() > 0.9  # centring by mass moves a lopsided few to the edge, as in MNIST


@pytest.mark.parametrize("draw", DRAWERS)
def test_scribbles_and_sticks_are_centred_by_mass_with_their_longer_side_20px(draw):
    images = draw(200, torch.Generator().manual_seed(1))
    grid = torch.arange(FIELD, dtype=torch.float32)
    mass = images.sum((1, 2))
    rows, columns = (images.sum(2) * grid).sum(1) / mass, (images.sum(1) * grid).sum(1) / mass
    offsets = torch.cat([rows - CENTRE, columns - CENTRE]).abs()
    assert offsets.mean() < 0.5 and offsets.max() < 2.0  # the mass of the pen's path, not of its rounded ends
    inked = images > 0.5
    height = inked.any(2).sum(1)
    width = inked.any(1).sum(1)
    longer = torch.maximum(height, width).float()
    assert (longer <= BOX + 1).all() and (longer >= BOX - 2).float().mean() > 0.9  # a few short strokes fade


@pytest.mark.parametrize("draw", DRAWERS)
def test_the_same_generator_draws_the_same_scribbles_and_another_draws_others(draw):
    first = draw(50, torch.Generator().manual_seed(7))
    assert torch.equal(first, draw(50, torch.Generator().manual_seed(7)))
    assert not torch.equal(first, draw(50, torch.Generator().manual_seed(8)))
    assert draw(0).shape == (0, FIELD, FIELD)
    with pytest.raises(ValueError, match="count must be >= 0"):
        draw(-1)


def test_the_non_digits_are_half_scribbles_and_half_stick_characters():
    generator = torch.Generator().manual_seed(3)
    expected = torch.cat([scribbles(6, generator), sticks(5, generator)])
    assert torch.equal(non_digits(11, torch.Generator().manual_seed(3)), expected)


def test_stick_characters_are_built_of_straighter_strokes_than_scribbles():
    # Most of a stick character's strokes are straight bars between grid points: its ink lies along fewer rows and
    # columns than a scribble's curves do, for the same 20-px box.
    def inked_lines(images):
        inked = images > 0.5
        return (inked.any(1).sum(1) + inked.any(2).sum(1)).float().mean()
    ink_sticks, ink_scribbles = sticks(400), scribbles(400)
    assert (ink_sticks > 0.5).float().sum((1, 2)).mean() > (ink_scribbles > 0.5).float().sum((1, 2)).mean()
    assert inked_lines(ink_sticks) <= inked_lines(ink_scribbles) + 2


def test_the_uniform_loss_is_lowest_for_flat_logits():
    flat, peaked = torch.zeros(4, 10), torch.eye(10)[:4] * 10
    assert uniform_loss(flat).item() == pytest.approx(torch.log(torch.tensor(10.0)).item())
    assert uniform_loss(peaked) > uniform_loss(flat)


def test_non_digits_are_served_normalized_and_the_same_for_the_same_seed_and_epoch():
    served = OutlierExposure.drawn(6, 0.5, mean=0.13, std=0.31, seed=3, augmentation=Augmentation(max_shift=2))
    assert served.bank.shape == (BANK, 1, FIELD, FIELD)
    assert served.bank.min().item() == pytest.approx(-0.13 / 0.31)  # black background, normalized like the digits
    first, second = next(served.stream(2)), next(served.stream(2))
    assert first.shape == (6, 1, FIELD, FIELD) and torch.equal(first, second)
    stream = served.stream(2)
    assert not torch.equal(next(stream), next(stream))  # each step gets new ones
    assert not torch.equal(next(served.stream(3)), first)


def test_outlier_exposure_appends_non_digits_to_each_batch_and_keeps_its_labels():
    served = OutlierExposure.drawn(3, 0.5, mean=0.0, std=1.0)
    images, labels = torch.zeros(4, 1, FIELD, FIELD), torch.arange(4)
    (both, kept), = list(served.beside([(images, labels)]))
    assert both.shape == (7, 1, FIELD, FIELD) and torch.equal(both[:4], images) and torch.equal(kept, labels)
    assert both[4:].amax() > 0.5  # drawn strokes, not the digits' black
    assert served.loss(torch.zeros(3, 10)).item() == pytest.approx(0.5 * torch.log(torch.tensor(10.0)).item())


def test_the_refusal_threshold_keeps_the_chosen_share_of_validation_digits():
    scores = torch.randn(10_000, generator=torch.Generator().manual_seed(0))
    below = threshold(scores, keep=0.95)
    assert (scores >= below).float().mean().item() == pytest.approx(0.95, abs=0.001)
    assert evidence(torch.tensor([[9.0, 0, 0], [0.0, 0, 0]]))[0] > evidence(torch.tensor([[0.0, 0, 0]]))[0]
    with pytest.raises(ValueError, match="keep must be in"):
        threshold(scores, keep=0)


def test_the_two_thresholds_together_keep_the_chosen_share_of_validation_digits():
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(10_000, generator=generator)  # the two scores agree in part, as on real digits
    familiarities, evidences = shared + torch.randn(10_000, generator=generator), shared
    for keep in (0.99, 0.95):
        below_familiarity, below_evidence = thresholds(familiarities, evidences, keep=keep)
        kept = (familiarities >= below_familiarity) & (evidences >= below_evidence)
        assert kept.float().mean().item() == pytest.approx(keep, abs=0.001)
        # Each refuses fewer than 1 - keep alone, the same share of its own scores.
        share = (familiarities < below_familiarity).float().mean().item()
        assert (1 - keep) / 2 <= share < 1 - keep
        assert (evidences < below_evidence).float().mean().item() == pytest.approx(share, abs=0.001)
    assert thresholds(familiarities, evidences, keep=1.0) == (familiarities.min().item(), evidences.min().item())
    with pytest.raises(ValueError, match="keep must be in"):
        thresholds(familiarities, evidences, keep=1.5)


def test_familiarity_is_the_similarity_to_the_kth_nearest_familiar_feature():
    familiar = torch.tensor([[1.0, 0, 0]] * NEIGHBOURS + [[0.0, 1, 0]] * NEIGHBOURS)  # unit rows
    scores = familiarity(torch.tensor([[2.0, 0, 0], [0.0, 3, 0], [0.0, 0, 1], [1.0, 1, 0]]), familiar.half())
    assert scores.tolist() == pytest.approx([1.0, 1.0, 0.0, 2 ** -0.5], abs=1e-3)
    lonely = torch.tensor([[1.0, 0, 0]] + [[0.0, 1, 0]] * NEIGHBOURS)  # one near neighbour does not vouch alone
    assert familiarity(torch.tensor([[1.0, 0, 0]]), lonely).item() == pytest.approx(0.0)
    assert familiarity(torch.tensor([[1.0, 0, 0]]), lonely[:2]).item() == pytest.approx(0.0)  # k <= rows


def test_familiar_features_are_unit_half_precision_rows_of_a_seeded_sample():
    model, images = LeNet5(), torch.randn(300, 1, FIELD, FIELD, generator=torch.Generator().manual_seed(0))
    familiar = familiar_features(model, images, count=100, seed=1)
    assert familiar.shape == (100, 400) and familiar.dtype == torch.float16
    assert familiar.float().norm(dim=1) == pytest.approx(torch.ones(100), abs=2e-3)
    assert torch.equal(familiar, familiar_features(model, images, count=100, seed=1))
    assert not torch.equal(familiar, familiar_features(model, images, count=100, seed=2))
    assert familiar_features(model, images[:30]).shape == (30, 400)  # fewer training images than FAMILIAR: all
    assert image_familiarity(model, images[:10], familiar).shape == (10,)


def test_best_pt_keeps_familiar_features_and_the_threshold_that_keeps_99_percent(tiny_config):
    result = fit(dataclasses.replace(tiny_config, epochs=2), verbose=False)
    refusal = refusal_of(load_checkpoint(tiny_config.runs_dir + "/tiny/checkpoints/best.pt"))
    assert refusal.familiar.dtype == torch.float16 and refusal.familiar.shape[1] == 400
    assert len(refusal.familiar) == min(FAMILIAR, 1200 - tiny_config.val_size)
    assert refusal.familiarity_below == result["familiarity_below"]
    assert refusal.evidence_below == result["evidence_below"]
    predictor = load_model(tiny_config.runs_dir + "/tiny/checkpoints/best.pt")
    assert predictor.refusal.familiarity_below == result["familiarity_below"]
    assert predictor.refusal.familiar.dtype == torch.float32
    assert predictor.refusal.evidence_below == result["evidence_below"]
    # Together the two thresholds refuse about 1% of the validation digits (2 of the tiny set's 200).
    splits = load_splits(data_dir=tiny_config.data_dir, val_size=tiny_config.val_size, seed=tiny_config.seed)
    answers = classify(predictor, [Preprocessed(image[None], image[0].numpy()) for image in splits.val.images])
    assert 1 <= sum(answer.outcome == NOT_A_DIGIT for answer in answers) <= 4


def test_a_plain_model_finds_scribbles_unfamiliar(tiny_config):
    # No scribbles in training: the features alone tell the tiny set's bars from pen scribbles.
    fit(dataclasses.replace(tiny_config, scribbles=0, epochs=2), verbose=False)
    predictor = load_model(tiny_config.runs_dir + "/tiny/checkpoints/best.pt")
    answers = predict(predictor, list(scribbles(100, torch.Generator().manual_seed(12345)).numpy()))
    refused = sum(answer.outcome == NOT_A_DIGIT and answer.label is None for answer in answers)
    assert refused >= 70, refused


@pytest.mark.parametrize("name, value, message", [
    ("scribbles", -1, "scribbles must be between 0 and 1024"),
    ("scribbles", 5000, "scribbles must be between 0 and 1024"),
    ("outlier_weight", -0.5, "outlier_weight must be between 0 and 10"),
    ("outlier_weight", float("nan"), "outlier_weight must be a finite number"),
])
def test_bad_scribble_settings_are_one_clear_sentence(name, value, message):
    with pytest.raises(ConfigError, match=message):
        Config(**{name: value})


def test_the_default_recipe_trains_beside_non_digits_and_the_fast_preset_does_not():
    assert Config().scribbles == 16 and Config().outlier_weight == 0.05
    assert PRESETS["fast"]["scribbles"] == 0


def test_a_model_trained_with_scribbles_refuses_unseen_ones(tiny_config):
    config = dataclasses.replace(tiny_config, scribbles=16, epochs=4, run_name="scribbles")
    result = fit(config, verbose=False)
    predictor = load_model(tiny_config.runs_dir + "/scribbles/checkpoints/best.pt")
    assert predictor.refusal.familiarity_below == result["familiarity_below"]
    unseen = scribbles(100, torch.Generator().manual_seed(12345))  # not from the training bank's generator
    answers = predict(predictor, list(unseen.numpy()))
    refused = sum(answer.outcome == NOT_A_DIGIT and answer.label is None for answer in answers)
    assert refused >= 70, refused  # the threshold keeps 99% of validation digits


def test_the_training_loss_reported_with_scribbles_is_the_digits_cross_entropy(tiny_config):
    config = dataclasses.replace(tiny_config, scribbles=8)
    _, splits, model, _ = build_run(config)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # the weights stay put: both passes see the same model
    splits.train.epoch = 1
    plain = train_one_epoch(model, splits.train, frozen)
    with_scribbles = train_one_epoch(model, splits.train, frozen, extra=OutlierExposure.for_run(config, splits))
    assert with_scribbles == pytest.approx(plain, rel=1e-4)  # the scribbles' loss shapes the gradient only


def test_the_refusal_refuses_under_either_threshold_and_fits_on_validation_digits():
    rule = Refusal(torch.eye(400)[:2], familiarity_below=0.5, evidence_below=1.0)
    familiarities, evidences = torch.tensor([0.9, 0.1, 0.9, 0.1]), torch.tensor([2.0, 2.0, 0.5, 0.5])
    assert rule.refuses(familiarities, evidences).tolist() == [False, True, True, True]
    model = LeNet5()
    images = torch.randn(400, 1, FIELD, FIELD, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model(images[200:])
    fitted = Refusal.fit(model, images[:200], images[200:], logits, keep=0.9)
    kept = ~fitted.refuses(image_familiarity(model, images[200:], fitted.familiar), evidence(logits))
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.01)  # keeps the share asked of the validation
