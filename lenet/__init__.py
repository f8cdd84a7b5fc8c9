"""LeNet-5 on MNIST in PyTorch: the lesson in the open.

Read in this order — these files are the whole of training:
    model.py        LeNet-5 itself: a pure nn.Module that returns logits, and its Kaiming initialisation
    data.py         MNIST: the files, the train/validation/test split, batches and augmentation
    config.py       every setting in one frozen dataclass; its defaults reproduce the headline result
    train.py        the loop (`train_one_epoch`) and `fit`, which runs it epoch after epoch
    callbacks.py    what `fit` calls each epoch: TensorBoard logs, checkpoints, progress; early stopping
    evaluate.py     loss and accuracy on a split, and the step after training: calibrate best.pt, test it once
    checkpoint.py   the one checkpoint format and every key in it: save, load safely, rebuild the model
    runs.py         run folders: their layout, claiming one, resuming, the default model
    calibration.py  temperature scaling: probabilities that mean what they say
    lr_finder.py    the learning-rate range test behind the 1cycle schedule
    errors.py, files.py   the one error type a user can fix; atomic writes and OS errors in words

May be skipped while learning to train — each subpackage names who it is for:
    refusal/        answering "not a digit": the refusal rule, and outlier exposure with drawn non-digits
    inference/      from a trained model to answers: preparing people's images, predicting, scoring a folder
    apps/           programs on top: the drawing pad widget, the web server and its page, the exporter
    cli/            the command-line tools, one module per command, and what every command shares
    notebook/       helpers only the notebooks use: plots, experiment bookkeeping, TensorBoard readers
"""

import os

# Two lenet processes at once (a notebook and `make train`, or the test suite beside anything) must share the
# cores, not fight for them: GNU OpenMP's default keeps an idle thread spinning (300,000 turns) for a core the
# other process holds, which made two trainings 7.6x slower each. A short spin shares the cores and keeps a
# run alone as fast (benchmarks/concurrency.py). Set before torch is first imported; a user's own setting wins.
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", "10000")

from lenet.config import Config  # noqa: E402
from lenet.errors import LenetError  # noqa: E402
from lenet.model import LeNet5  # noqa: E402

__all__ = ["Config", "LeNet5", "LenetError"]
__version__ = "0.1.0"
