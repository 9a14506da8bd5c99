"""Where the windows go, and how overlapping window outputs are blended.

Windows of `tile` pixels step by `tile - overlap` from the top-left corner; the last column and row
are pulled back to end at the raster's edge, so every window lies inside the raster unless the
raster is smaller than one window (then the one window is padded). Outputs may be coarser than the
input by an integer `factor` (16 for patch embeddings); window positions are then multiples of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np

from ..errors import InputError


def axis_starts(length: int, tile: int, stride: int, factor: int = 1) -> List[int]:
    """Window starts along one axis covering [0, length), all multiples of `factor`."""
    padded = math.ceil(length / factor) * factor
    if padded <= tile:
        return [0]
    last = padded - tile
    starts = list(range(0, last, stride))
    starts.append(last)
    return starts


def window_grid(width: int, height: int, tile: int, stride: int) -> List[Tuple[int, int]]:
    """(col, row) of every window, row by row; any stride, also one larger than the tile (windows with gaps)."""
    return [(c, r) for r in axis_starts(height, tile, stride) for c in axis_starts(width, tile, stride)]


@dataclass(frozen=True)
class WindowPlan:
    """The window grid over a width x height raster; outputs are `factor` times coarser."""

    width: int
    height: int
    tile: int
    overlap: int
    factor: int = 1

    def __post_init__(self):
        if self.tile <= 0 or self.tile % self.factor:
            raise InputError(f"The tile size ({self.tile}) must be a positive multiple of {self.factor}.")
        if not 0 <= self.overlap < self.tile:
            raise InputError(f"The overlap ({self.overlap}) must be at least 0 and less than the tile ({self.tile}).")
        if self.overlap % self.factor:
            raise InputError(f"The overlap ({self.overlap}) must be a multiple of {self.factor}.")

    @property
    def stride(self) -> int:
        return self.tile - self.overlap

    @property
    def cols(self) -> List[int]:
        return axis_starts(self.width, self.tile, self.stride, self.factor)

    @property
    def rows(self) -> List[int]:
        return axis_starts(self.height, self.tile, self.stride, self.factor)

    def __len__(self) -> int:
        return len(self.cols) * len(self.rows)

    @property
    def out_width(self) -> int:
        return math.ceil(self.width / self.factor)

    @property
    def out_height(self) -> int:
        return math.ceil(self.height / self.factor)

    @property
    def out_tile(self) -> int:
        return self.tile // self.factor

    def weights(self) -> np.ndarray:
        """[out_tile, out_tile] blending weights at output resolution."""
        return blend_weights(self.out_tile, self.overlap // self.factor)


def blend_weights(size: int, ramp: int, floor: float = 1e-3) -> np.ndarray:
    """A window's weight: 1 in the middle, a raised-cosine ramp over `ramp` pixels at each edge.

    Two windows overlapping by `ramp` pixels have weights summing to 1 across the overlap
    (sin^2 + cos^2), so blended outputs have no seams; the small floor keeps pixels that only one
    window sees at the raster's edge from being dropped.
    """
    line = np.ones(size, dtype=np.float64)
    if ramp > 0:
        t = (np.arange(ramp) + 0.5) / ramp
        rise = np.sin(t * np.pi / 2) ** 2
        line[:ramp] = rise
        line[size - ramp:] = np.minimum(line[size - ramp:], rise[::-1])
    line = np.maximum(line, floor)
    return np.outer(line, line).astype(np.float32)
