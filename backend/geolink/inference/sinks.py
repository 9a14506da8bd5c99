"""The engine's sinks: blended logits into class maps (classify, zones), blended features into a feature
raster and a sample for its PCA preview (embed)."""

from __future__ import annotations

import numpy as np

NODATA = 255
SAMPLE = 20_000  # feature vectors kept for fitting the PCA


class ClassWriter:
    """Sink: logits -> class numbers (uint8, NODATA where invalid) and, when given rasters for them,
    per-class probabilities in percent and the top probability (the confidence, float32). The rasters
    are writer.Handle objects."""

    def __init__(self, classes, probabilities=None, confidence=None):
        self.classes, self.probabilities, self.confidence = classes, probabilities, confidence
        self.counts = None

    def __call__(self, row: int, logits: np.ndarray, valid: np.ndarray) -> None:
        classes = np.where(valid, logits.argmax(0), NODATA).astype(np.uint8)
        self.classes.ds.GetRasterBand(1).WriteArray(classes, 0, row)
        counts = np.bincount(classes[valid].ravel(), minlength=len(logits))
        self.counts = counts if self.counts is None else self.counts + counts
        if self.probabilities is None and self.confidence is None:
            return
        p = np.exp(logits - logits.max(0, keepdims=True))
        p /= p.sum(0, keepdims=True)
        if self.probabilities is not None:
            percent = np.where(valid[None], np.round(p * 100), NODATA).astype(np.uint8)
            self.probabilities.ds.WriteArray(percent, 0, row)
        if self.confidence is not None:
            self.confidence.ds.GetRasterBand(1).WriteArray(np.where(valid, p.max(0), 0).astype(np.float32), 0, row)

    def shares(self, classes) -> dict:
        counts = self.counts if self.counts is not None else np.zeros(len(classes), np.int64)
        total = max(int(counts.sum()), 1)
        return {c["name"]: round(int(n) / total, 4) for c, n in zip(classes, counts)}


class FeatureWriter:
    """Sink: blended features written strip by strip, and a fixed-size sample kept for the PCA."""

    def __init__(self, raster, seed: int = 0):
        self.raster, self.rng = raster, np.random.default_rng(seed)
        self.sample, self.seen = [], 0

    def __call__(self, row: int, values: np.ndarray, valid: np.ndarray) -> None:
        out = np.where(valid[None], values, np.nan).astype(np.float32)
        self.raster.ds.WriteArray(out, 0, row)
        vectors = values[:, valid].T
        self.seen += len(vectors)
        if len(vectors):  # keep every pixel with probability SAMPLE / (pixels so far), roughly uniform
            keep = self.rng.random(len(vectors)) < min(1.0, 4 * SAMPLE / max(self.seen, 1))
            self.sample.append(vectors[keep])
            if sum(len(s) for s in self.sample) > 4 * SAMPLE:
                pool = np.concatenate(self.sample)
                self.sample = [pool[self.rng.choice(len(pool), SAMPLE, replace=False)]]
