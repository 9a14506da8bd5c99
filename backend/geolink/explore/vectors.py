"""The math on embedding vectors: cosine similarity to queries, seeded k-means, bilinear upsampling.

Plain numpy: a query over cached features is one matrix product, and leaving torch out keeps a
query's process light (no torch import).
"""

from __future__ import annotations

import numpy as np


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def cosine(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """[N, Q] cosine similarity of vectors [N, C] to queries [Q, C], in [-1, 1]."""
    return np.clip(unit_rows(vectors.astype(np.float32)) @ unit_rows(queries.astype(np.float32)).T, -1.0, 1.0)


def squared_distances(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """[N, K] squared Euclidean distances."""
    v, c = vectors.astype(np.float32), centroids.astype(np.float32)
    d = (v * v).sum(1, keepdims=True) - 2 * v @ c.T + (c * c).sum(1)[None]
    return np.maximum(d, 0.0)


def kmeans(sample: np.ndarray, k: int, seed: int = 0, iterations: int = 100, tol: float = 1e-6) -> np.ndarray:
    """[k, C] centroids of `sample` [N, C] (N >= k): k-means++ seeding, then Lloyd's iterations until the
    centroids move less than `tol`. The same sample and seed give the same centroids; clusters are ordered
    by size (largest first) so their numbers are stable too."""
    x = sample.astype(np.float64)
    rng = np.random.default_rng(seed)
    centroids = np.empty((k, x.shape[1]))
    centroids[0] = x[rng.integers(len(x))]
    closest = ((x - centroids[0]) ** 2).sum(1)
    for i in range(1, k):
        total = closest.sum()
        pick = rng.choice(len(x), p=closest / total) if total > 0 else rng.integers(len(x))
        centroids[i] = x[pick]
        closest = np.minimum(closest, ((x - centroids[i]) ** 2).sum(1))
    for _ in range(iterations):
        labels = squared_distances(x, centroids).argmin(1)
        moved = 0.0
        for j in range(k):
            members = x[labels == j]
            new = members.mean(0) if len(members) else x[squared_distances(x, centroids).min(1).argmax()]
            moved = max(moved, float(((new - centroids[j]) ** 2).sum()))
            centroids[j] = new
        if moved < tol:
            break
    sizes = np.bincount(squared_distances(x, centroids).argmin(1), minlength=k)
    return centroids[np.argsort(-sizes, kind="stable")].astype(np.float32)


def linear_matrix(start: int, stop: int, n: int, factor: int, lo: int, hi: int) -> np.ndarray:
    """[stop - start, hi - lo] weights that interpolate output pixels [start, stop) from source pixels [lo, hi)
    of an axis of n pixels, the output `factor` times finer: bilinear with pixel centres aligned (as
    torch's interpolate with align_corners=False), clamped at the edges."""
    pos = np.clip((np.arange(start, stop) + 0.5) / factor - 0.5, 0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)
    m = np.zeros((stop - start, hi - lo), dtype=np.float32)
    rows = np.arange(stop - start)
    np.add.at(m, (rows, i0 - lo), 1 - w)
    np.add.at(m, (rows, i1 - lo), w)
    return m


def source_span(start: int, stop: int, n: int, factor: int) -> tuple:
    """The source pixels [lo, hi) that output pixels [start, stop) interpolate from (see linear_matrix)."""
    lo = int(np.clip(np.floor((start + 0.5) / factor - 0.5), 0, n - 1))
    hi = int(np.clip(np.floor((stop - 0.5) / factor - 0.5) + 2, 1, n))
    return lo, max(hi, lo + 1)


def upsample(values: np.ndarray, weight: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple:
    """Bilinear upsampling of values [K, h, w] where weight [h, w] is 1 (0: no data) by the matrices rows [H, h]
    and cols [W, w]: a normalised interpolation, so no-data neighbours do not pull values towards 0.
    Returns (values [K, H, W], valid [H, W])."""
    w = (rows @ weight.astype(np.float32)) @ cols.T
    v = (rows @ (values * weight)) @ cols.T
    ok = w > 1e-6
    return np.where(ok, v / np.where(ok, w, 1.0), 0.0).astype(np.float32), ok
