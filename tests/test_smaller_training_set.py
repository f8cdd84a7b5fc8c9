"""SmallerTrainingSet (lenet.notebook.experiments): `fit` trains on the first N training images, validates and tests
on the whole splits, and a count the split cannot give is one clear error."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lenet.callbacks import Callback
from lenet.data import load_splits
from lenet.errors import LenetError
from lenet.notebook.experiments import SmallerTrainingSet
from lenet.train import fit


class WhatFitTrainedOn(Callback):
    """Records the splits of every epoch and the steps taken."""

    def __init__(self) -> None:
        self.sizes, self.first_images, self.steps = [], None, 0

    def on_epoch_end(self, state) -> None:
        self.sizes.append((len(state.splits.train.labels), len(state.splits.val.labels), len(state.splits.test.labels)))
        self.first_images = state.splits.train.images.cpu()

    def on_train_end(self, state) -> None:
        self.steps = state.step


def test_fit_trains_on_the_first_images_only_and_validates_and_tests_on_all(tiny_config):
    seen = WhatFitTrainedOn()
    config = replace(tiny_config, epochs=2)  # 1,000 training images, 200 validation, 300 test
    fit(config, callbacks=[SmallerTrainingSet(320), seen], verbose=False)
    assert seen.sizes == [(320, 200, 300)] * 2
    assert seen.steps == 2 * 320 // config.batch_size  # 10 batches of 32 per epoch, not 32 of them
    whole = load_splits("mnist", config.data_dir, config.val_size, config.batch_size).train.images
    assert torch.equal(seen.first_images, whole[:320])


@pytest.mark.parametrize("images", [0, 1001])
def test_a_count_the_training_split_cannot_give_is_one_clear_error(tiny_config, images):
    with pytest.raises(LenetError, match=r"between 1 and 1,000 images.*got"):
        fit(tiny_config, callbacks=[SmallerTrainingSet(images)], verbose=False)
