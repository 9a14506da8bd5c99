"""Frozen-encoder features computed once per training sample, so each epoch costs only the head.

Features are stored as float16 numpy arrays, one per encoder layer: in memory, or in a
temporary file (np.memmap) when they would take more than `memory_limit` bytes.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np

from ..progress import Progress


class FeatureCache:
    """Features of N samples: `layers[i]` is an [N, C_i, h_i, w_i] float16 array."""

    def __init__(self, shapes: Sequence[Sequence[int]], n: int, memory_limit: float = 2e9):
        size = n * sum(int(np.prod(s)) for s in shapes) * 2
        self._tmp: Optional[tempfile.TemporaryDirectory] = None
        if size > memory_limit:
            self._tmp = tempfile.TemporaryDirectory(prefix="geolink-features-")
            self.layers = [np.lib.format.open_memmap(Path(self._tmp.name) / f"layer{i}.npy", mode="w+",
                                                     dtype=np.float16, shape=(n, *s)) for i, s in enumerate(shapes)]
        else:
            self.layers = [np.zeros((n, *s), dtype=np.float16) for s in shapes]
        self.n = n
        self.on_disk = self._tmp is not None

    def put(self, start: int, features: Sequence) -> None:
        for store, f in zip(self.layers, features):
            store[start:start + f.shape[0]] = f.detach().to("cpu", dtype=_torch().float16).numpy()

    def get(self, index: np.ndarray, device) -> List:
        """The features of samples `index` (sorted reads fastest from disk) as float32 tensors on `device`."""
        torch = _torch()
        index = np.asarray(index)
        return [torch.from_numpy(np.asarray(store[index])).to(device, dtype=torch.float32) for store in self.layers]

    def close(self) -> None:
        self.layers = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def _torch():
    import torch

    return torch


def build_cache(encode: Callable[[List[int]], List], n: int, batch_size: int,
                progress: Progress, memory_limit: float = 2e9) -> FeatureCache:
    """Store `encode(indices)` (the feature maps of those samples) for samples 0..n-1, in batches, without grad."""
    torch = _torch()
    cache: Optional[FeatureCache] = None
    starts = list(range(0, n, batch_size))
    with torch.no_grad():
        for start in progress.steps(starts, len(starts), "Encoding training windows"):
            idx = list(range(start, min(start + batch_size, n)))
            feats = encode(idx)
            if cache is None:
                cache = FeatureCache([tuple(f.shape[1:]) for f in feats], n, memory_limit)
            cache.put(start, feats)
    return cache
