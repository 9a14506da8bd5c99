"""Patch mixing pastes one block alike into feature maps, bands and labels, in the share of batches asked."""

from __future__ import annotations

import numpy as np
import torch

from geolink.training.patch_mix import BLOCK_AREA, draw_mix

GRID, PATCH, BATCH = (4, 6), 16, 5


def _draws(share: float, n: int = 2000, batch: int = BATCH):
    rng = np.random.default_rng(0)
    return [draw_mix(rng, batch, GRID, share) for _ in range(n)]


def test_block_is_pasted_alike_into_features_bands_and_labels():
    mix = next(m for m in _draws(1.0))
    h, w = GRID
    sample = torch.arange(BATCH).view(BATCH, 1, 1, 1)
    features = sample.expand(BATCH, 7, h, w).float()  # each value: the sample it came from
    bands = sample.expand(BATCH, 3, h * PATCH, w * PATCH).float()
    labels = sample[:, 0].expand(BATCH, h * PATCH, w * PATCH).clone()
    f, b, y = mix(features), mix(bands), mix(labels)
    assert torch.equal(features, sample.expand(BATCH, 7, h, w).float())  # inputs untouched
    from_cells = f[:, 0].repeat_interleave(PATCH, 1).repeat_interleave(PATCH, 2)
    assert torch.equal(from_cells, b[:, 0]) and torch.equal(from_cells.long(), y)
    moved = (f[:, 0] != sample[:, 0, 0, 0].view(BATCH, 1, 1).float())
    assert moved.any(1).any(1).all()  # every sample received a block
    block = moved[0].float()
    rows, cols = block.any(1).nonzero(), block.any(0).nonzero()
    assert block.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
    assert set(f[:, 0][moved].long().tolist()) <= set(range(BATCH))
    assert [int(f[i, 0][moved[i]][0]) for i in range(BATCH)] == [BATCH - 1, 0, 1, 2, 3]


def test_share_of_batches_and_block_sizes():
    draws = _draws(0.5)
    mixed = [m for m in draws if m is not None]
    assert 0.45 < len(mixed) / len(draws) < 0.55
    cells = GRID[0] * GRID[1]
    areas = np.array([(m.rows[1] - m.rows[0]) * (m.cols[1] - m.cols[0]) / cells for m in mixed])
    assert areas.min() >= BLOCK_AREA[0] * 0.5 and areas.max() <= BLOCK_AREA[1] * 1.5  # rounded to whole cells
    assert 0.35 < areas.mean() < 0.65
    assert all(0 <= m.rows[0] < m.rows[1] <= GRID[0] and 0 <= m.cols[0] < m.cols[1] <= GRID[1] for m in mixed)
    assert all(m is None for m in _draws(0.0, 200)) and all(m is None for m in _draws(1.0, 50, batch=1))
