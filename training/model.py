"""LeNet-5 (LeCun et al., 1998), kept to the paper's size: 61 706 weights plus 44 batch-norm.

Same as the paper: 5x5 convolutions with 6 then 16 maps, subsampling after each, fully
connected 400 -> 120 -> 84 -> 10. The 28x28 MNIST image is zero-padded to the paper's 32x32.

Different from the paper, each change for trainability rather than capacity:
- ReLU instead of scaled tanh; 2x2 max pooling instead of trainable average subsampling.
- C3 connects to all 6 maps (the paper's sparse connection table saved 1998 compute).
- Batch normalisation (affine, 44 parameters) after each convolution: faster, steadier training.
- A linear output layer with softmax/cross-entropy instead of Euclidean RBF units.
- No dropout: the augmentation (training/augment.py) is the regulariser. With it this network
  underfits rather than overfits (accuracy on augmented batches stays below validation
  accuracy), so dropout only slowed learning within the five-minute budget.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import IMAGE_SIDE, NUM_CLASSES


class LeNet5(nn.Module):
    """Logits for (N, 1, 28, 28) standardised images (mean 0, std 1 over MNIST)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, kernel_size=5, padding=2),  # (N, 6, 28, 28): C1 on the padded 32x32
            nn.BatchNorm2d(6),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (N, 6, 14, 14): S2
            nn.Conv2d(6, 16, kernel_size=5),  # (N, 16, 10, 10): C3
            nn.BatchNorm2d(16),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (N, 16, 5, 5): S4
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (N, 400)
            nn.Linear(16 * 5 * 5, 120),  # C5
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),  # F6
            nn.ReLU(inplace=True),
            nn.Linear(84, NUM_CLASSES),  # output
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (IMAGE_SIDE, IMAGE_SIDE):
            raise ValueError(f"expected (N, 1, 28, 28) input, got {tuple(x.shape)}")
        return self.classifier(self.features(x))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (batch-norm running statistics are buffers, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
