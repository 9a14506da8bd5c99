"""Turning blended logits into class maps: the engine's sink for classify and zones."""

from __future__ import annotations

import numpy as np

NODATA = 255


def segmentation_predict(module):
    """The model's per-pixel class logits [B, K, H, W] for a batch of windows and their graphs."""
    def predict(images, graphs):
        return module(images, graphs)
    return predict


class ClassWriter:
    """Sink: logits -> class numbers (uint8, NODATA where invalid) and, when given rasters for them,
    per-class probabilities in percent and the top probability (the confidence, float32). The rasters
    are writer.Handle objects."""

    def __init__(self, classes, probabilities=None, confidence=None):
        self.classes, self.probabilities, self.confidence = classes, probabilities, confidence
        self.counts = None

    def __call__(self, row: int, logits: np.ndarray, valid: np.ndarray) -> None:
        p = np.exp(logits - logits.max(0, keepdims=True))
        p /= p.sum(0, keepdims=True)
        classes = np.where(valid, logits.argmax(0), NODATA).astype(np.uint8)
        self.classes.ds.GetRasterBand(1).WriteArray(classes, 0, row)
        counts = np.bincount(classes[valid].ravel(), minlength=len(logits))
        self.counts = counts if self.counts is None else self.counts + counts
        if self.probabilities is not None:
            percent = np.where(valid[None], np.round(p * 100), NODATA).astype(np.uint8)
            self.probabilities.ds.WriteArray(percent, 0, row)
        if self.confidence is not None:
            self.confidence.ds.GetRasterBand(1).WriteArray(np.where(valid, p.max(0), 0).astype(np.float32), 0, row)

    def shares(self, classes) -> dict:
        counts = self.counts if self.counts is not None else np.zeros(len(classes), np.int64)
        total = max(int(counts.sum()), 1)
        return {c["name"]: round(int(n) / total, 4) for c, n in zip(classes, counts)}
