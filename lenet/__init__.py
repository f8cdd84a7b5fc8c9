"""LeNet-5 on MNIST: model, data, config, training, checkpoints, preprocessing and inference."""

from lenet.config import Config
from lenet.errors import LenetError
from lenet.model import LeNet5

__all__ = ["Config", "LeNet5", "LenetError"]
__version__ = "0.1.0"
