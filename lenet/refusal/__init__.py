"""Answering "not a digit": how a model trained on digits learns to refuse what is not one. Notebook 10 teaches it.

    rule.py        the `Refusal`: the familiarity and evidence scores, their thresholds fitted on validation,
                   and the one rule every reader asks (`refuses`)
    exposure.py    `OutlierExposure`: drawn non-digits beside every training batch, with a loss of their own
    non_digits.py  drawing those non-digits: scribbles and stick characters, placed as MNIST's digits are

The training loop knows none of this: `lenet.train.fit` takes `OutlierExposure` as an extra batch source, and the
step after training (`lenet.finish`) fits the `Refusal` and stores it in best.pt through `lenet.checkpoint`.
"""

from lenet.refusal.exposure import OutlierExposure
from lenet.refusal.rule import Refusal

__all__ = ["OutlierExposure", "Refusal"]
