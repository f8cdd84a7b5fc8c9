"""LeNet-5 (LeCun et al., 1998) with ReLU and max-pooling, and its Kaiming normal initialisation.

Pure: no I/O and no device logic. It takes a normalized (B, 1, 28, 28) batch and returns logits.
"""

import torch
import torch.nn.functional as F
from torch import nn


class LeNet5(nn.Module):
    """conv 1->6 5x5 pad 2, pool, conv 6->16 5x5, pool, fc 400->120->84->10: 61,706 parameters."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, kernel_size=5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, num_classes)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # (B, num_classes) logits

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 400): what the two convolutions found, flattened (`lenet.refusal` compares them with digits')."""
        # relu(max_pool(x)) equals max_pool(relu(x)) because relu is monotonic; pooling first
        # applies the activation to 4x fewer values, forward and backward.
        x = F.relu(F.max_pool2d(self.conv1(x), 2))  # (B, 6, 14, 14)
        x = F.relu(F.max_pool2d(self.conv2(x), 2))  # (B, 16, 5, 5)
        return torch.flatten(x, 1)  # (B, 400)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The three fully connected layers: (B, 400) features -> (B, num_classes) logits."""
        x = F.relu(self.fc1(features))  # (B, 120)
        x = F.relu(self.fc2(x))  # (B, 84)
        return self.fc3(x)


def init_weights(model: nn.Module) -> None:
    """Kaiming normal weights (He et al., 2015, suited to ReLU) and zero biases."""
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
