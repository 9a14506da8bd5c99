"""Patch mixing, CutMix on the encoder's patch grid: in a share of the training batches each window receives a
block of another window's feature maps, bands and labels.

With a few dozen polygons a head learns a class partly from its surroundings: the benchmark's village on the
water, whose training villages all lie inland, was taken partly for marsh by most runs (2-60 % of its pixels).
Pasted blocks put each class in other surroundings, so the head learns more of a class from how it looks
(mixed, the village is 95-100 % built-up). The blocks follow the patch grid, so the cached features stay those
of whole patches. Off by default (finetune --patch-mix): it pays with long training (the benchmark's recipe),
not with finetune's short, early-stopped default, where it shifted errors between classes instead (README).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

BLOCK_AREA = (0.25, 0.75)  # share of the window a pasted block covers (CutMix's uniform mixing ratio, bounded)


@dataclass(frozen=True)
class PatchMix:
    """One batch's mixing: sample i receives the block rows x cols (in grid cells) of sample `source[i]`."""

    source: np.ndarray  # [B] sample indices within the batch
    rows: Tuple[int, int]
    cols: Tuple[int, int]
    grid: Tuple[int, int]  # the window's size in grid cells

    def __call__(self, x):
        """A copy of the batch tensor x [B, ..., H, W] (H, W multiples of the grid) with the block pasted."""
        import torch

        sy, sx = x.shape[-2] // self.grid[0], x.shape[-1] // self.grid[1]
        ys, xs = slice(self.rows[0] * sy, self.rows[1] * sy), slice(self.cols[0] * sx, self.cols[1] * sx)
        out = x.clone()
        out[..., ys, xs] = x[torch.as_tensor(self.source, device=x.device)][..., ys, xs]
        return out


def draw_mix(rng: np.random.Generator, batch: int, grid: Tuple[int, int], share: float) -> Optional[PatchMix]:
    """With probability `share`, a block of BLOCK_AREA of the window at a random place, each sample receiving
    it from the one before it in the batch; None otherwise (and for a batch of one)."""
    if batch < 2 or share <= 0 or rng.random() >= share:
        return None
    side = np.sqrt(rng.uniform(*BLOCK_AREA))
    h, w = (max(1, min(n, round(n * side))) for n in grid)
    y, x = int(rng.integers(0, grid[0] - h + 1)), int(rng.integers(0, grid[1] - w + 1))
    return PatchMix(np.roll(np.arange(batch), 1), (y, y + h), (x, x + w), tuple(grid))
