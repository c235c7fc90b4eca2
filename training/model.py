"""The digits CNN. Normalisation lives inside the model so every consumer feeds raw 0..16 pixels."""

from __future__ import annotations

import torch
from torch import nn


class DigitsCNN(nn.Module):
    """Input float32 (N, 1, 8, 8) raw pixel values 0..16; output logits (N, 10)."""

    def __init__(self, channels: tuple[int, int] = (16, 32), hidden: int = 64, dropout: float = 0.1) -> None:
        super().__init__()
        c1, c2 = channels
        # Filled from the training split's statistics before training; saved with the weights.
        self.register_buffer("pixel_mean", torch.tensor(0.0))
        self.register_buffer("pixel_std", torch.tensor(1.0))
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(dropout),
            nn.Linear(c2 * 4 * 4, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 10),
        )

    def set_normalisation(self, mean: float, std: float) -> None:
        self.pixel_mean.fill_(float(mean))
        self.pixel_std.fill_(max(float(std), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.pixel_mean) / self.pixel_std
        return self.classifier(self.features(x))


def build_model(model_config: dict) -> DigitsCNN:
    return DigitsCNN(tuple(model_config["channels"]), model_config["hidden"], model_config["dropout"])


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
