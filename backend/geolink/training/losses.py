"""Class-balanced cross-entropy over labelled pixels only."""

from __future__ import annotations

import numpy as np

IGNORE = -1  # label of unlabelled pixels (and of pixels of the other split)


def class_weights(pixel_counts: np.ndarray, power: float = 0.5) -> np.ndarray:
    """Weights proportional to (1 / frequency) ** power, mean 1 over the classes present.

    power 1 is full inverse-frequency balancing; 0.5 (the default) balances without letting a
    class of a few pixels dominate the loss. Absent classes get weight 0.
    """
    counts = np.asarray(pixel_counts, dtype=np.float64)
    weights = np.zeros_like(counts)
    present = counts > 0
    weights[present] = (counts[present] / counts[present].sum()) ** -power
    weights[present] /= weights[present].mean()
    return weights


def balanced_cross_entropy(pixel_counts: np.ndarray, device=None):
    """nn.CrossEntropyLoss weighted by class_weights(pixel_counts), ignoring IGNORE pixels."""
    import torch

    weight = torch.as_tensor(class_weights(pixel_counts), dtype=torch.float32, device=device)
    return torch.nn.CrossEntropyLoss(weight=weight, ignore_index=IGNORE)
