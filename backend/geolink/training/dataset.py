"""Training windows over the labels: pixels read once, polygons burnt, targets for each split.

The raster is a `raster.source.Source` (the grid classify and zones use: resampled to the model's
ground sample distance when asked, nodata masked). Windows lie on its grid: a validation grid of
non-overlapping windows (each labelled pixel scored once) and a training grid with step
`size - overlap`; both keep only windows that touch a polygon. Windows running past the raster's
edge are padded; padded and nodata pixels are unlabelled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .labels import LabelSet
from .losses import IGNORE
from .rasterize import LabelBurner, pixel_boxes
from .sampling import grid_windows


@dataclass
class LabelWindows:
    """Windows (top-left col, row), their polygon numbers, and which of them form the validation grid."""

    positions: List[Tuple[int, int]]
    polygon_ids: np.ndarray  # [n, size, size] int32, 1 + polygon index, 0 = unlabelled
    on_val_grid: np.ndarray  # [n] bool
    size: int

    def polygon_pixels(self, n_polygons: int) -> np.ndarray:
        """Pixels of each polygon after the overlap rule, counted once (on the non-overlapping grid)."""
        ids = self.polygon_ids[self.on_val_grid].reshape(-1)
        return np.bincount(ids, minlength=n_polygons + 1)[1:]

    def drop_invalid(self, valid: np.ndarray) -> None:
        """Unlabel pixels that are nodata in the raster ([n, size, size] bool, False = nodata)."""
        self.polygon_ids[~valid] = 0

    def targets(self, class_ids: np.ndarray, polygons: np.ndarray, scoring: bool) -> np.ndarray:
        """Class targets [n, size, size] int16 of the `polygons` (bool mask), IGNORE elsewhere.

        `scoring` keeps only the non-overlapping validation grid, so each pixel counts once.
        """
        lut = np.r_[IGNORE, np.where(polygons, class_ids, IGNORE)].astype(np.int16)
        out = lut[self.polygon_ids]
        if scoring:
            out[~self.on_val_grid] = IGNORE
        return out


def label_windows(labels: LabelSet, grid, size: int, overlap: int,
                  progress: Optional[Progress] = None) -> LabelWindows:
    """Burn the polygons into every window of the validation and training grids that touches one.

    `grid`: anything with width, height, geotransform and wkt (a raster Source)."""
    progress = progress or Progress()
    if not 0 <= overlap < size:
        raise InputError(f"The window overlap ({overlap}) must be at least 0 and less than the window ({size}).")
    boxes = pixel_boxes(labels, grid.geotransform)
    val_grid = set(grid_windows(boxes, grid.width, grid.height, size, size))
    positions = sorted(val_grid | set(grid_windows(boxes, grid.width, grid.height, size, size - overlap)),
                       key=lambda p: (p[1], p[0]))
    burner = LabelBurner(labels, grid.geotransform, grid.wkt)
    ids = np.zeros((len(positions), size, size), dtype=np.int32)
    for i, (x, y) in enumerate(positions):
        _tick(progress, i, len(positions), "Rasterising labels")
        ids[i] = burner.burn(x, y, size, size)
        ids[i, max(0, grid.height - y):, :] = 0
        ids[i, :, max(0, grid.width - x):] = 0
    keep = ids.reshape(len(positions), -1).any(1)
    positions = [p for p, k in zip(positions, keep) if k]
    return LabelWindows(positions, ids[keep], np.array([p in val_grid for p in positions], dtype=bool), size)


def read_windows(source, positions: Sequence[Tuple[int, int]], size: int, bands: Sequence[int],
                 normalise: Callable[[np.ndarray], np.ndarray], progress: Progress) -> Tuple[np.ndarray, np.ndarray]:
    """([n, C, size, size] float32 normalised pixels, [n, size, size] valid) of each window; 0 where invalid."""
    images = np.zeros((len(positions), len(bands), size, size), dtype=np.float32)
    valid = np.zeros((len(positions), size, size), dtype=bool)
    for i, (x, y) in enumerate(positions):
        _tick(progress, i, len(positions), "Reading windows")
        raw, valid[i] = source.read(bands, x, y, size, size)
        images[i] = np.where(valid[i], normalise(raw), 0.0)
    return images, valid


def _tick(progress: Progress, i: int, n: int, message: str) -> None:
    """Report about 20 times over a fast loop (and check for cancel)."""
    if i % max(1, n // 20) == 0:
        progress.update(100.0 * i / max(n, 1), f"{message} {i}/{n}")
