"""The 3-band preview of a feature raster: its first three principal components, scaled to bytes."""

from __future__ import annotations

import numpy as np

from ..progress import Progress


def fit_pca(sample, k: int = 3):
    """(mean, components [k, C], low, high) of the sample; components' signs fixed so output is reproducible."""
    mean = sample.mean(0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    comps = vt[:k]
    if len(comps) < k:
        comps = np.vstack([comps, np.zeros((k - len(comps), sample.shape[1]), dtype=comps.dtype)])
    comps *= np.sign(comps[np.arange(k), np.abs(comps).argmax(1)])[:, None] + (comps.sum(1) == 0)[:, None]
    proj = (sample - mean) @ comps.T
    low, high = np.percentile(proj, 2, axis=0), np.percentile(proj, 98, axis=0)
    return mean, comps, low, np.maximum(high, low + 1e-6)


def write_preview(features_ds, preview_ds, pca, progress: Progress, rows: int = 256) -> None:
    """Project the feature raster strip by strip onto the PCA and write bytes 1-255 (0 = nodata)."""
    mean, comps, low, high = pca
    height = features_ds.RasterYSize
    starts = range(0, height, rows)
    for r0 in progress.steps(starts, len(starts), "Writing the PCA preview"):
        block = features_ds.ReadAsArray(0, r0, None, min(rows, height - r0))
        c, h, w = block.shape
        flat = block.reshape(c, -1).T
        ok = np.isfinite(flat).all(1)
        proj = np.zeros((len(flat), 3), dtype=np.float32)
        proj[ok] = (flat[ok] - mean) @ comps.T
        scaled = np.clip((proj - low) / (high - low), 0, 1) * 254 + 1
        out = np.where(ok[:, None], scaled, 0).astype(np.uint8)
        preview_ds.WriteArray(out.T.reshape(3, h, w), 0, r0)
