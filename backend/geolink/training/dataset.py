"""Training windows over the labels: pixels read once, polygons burnt, targets for the two splits.

Windows lie on the raster's grid: a validation grid of non-overlapping windows (each labelled
pixel scored once) and a training grid with step `size - overlap`; both keep only windows that
touch a polygon. Windows running past the raster's edge are padded; padded pixels are unlabelled.
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
class RasterGrid:
    """An open GDAL raster and its grid (north-up)."""

    path: str
    width: int
    height: int
    geotransform: Tuple[float, ...]
    wkt: str
    bands: int

    @classmethod
    def open(cls, path: str, gsd: Optional[float] = None) -> RasterGrid:
        """The raster's own grid, or (gsd given and different) a virtual raster resampled to `gsd` map units."""
        from osgeo import gdal

        gdal.UseExceptions()
        try:
            ds = gdal.Open(str(path))
        except RuntimeError as exc:
            raise InputError(f"Cannot open the raster {path}: {exc}") from None
        gt = ds.GetGeoTransform()
        if gsd and abs(gsd - abs(gt[1])) > 1e-6 * gsd:
            vrt = f"/vsimem/geolink-finetune-{abs(hash((str(path), gsd)))}.vrt"
            ds = gdal.Warp(vrt, ds, format="VRT", xRes=gsd, yRes=gsd, resampleAlg="average"
                           if gsd > abs(gt[1]) else "bilinear")
            path, gt = vrt, ds.GetGeoTransform()
        if gt[2] or gt[4] or gt[5] >= 0:
            raise InputError(f"The raster {path} is rotated or not north-up.", hint="Warp it to a north-up grid.")
        if not ds.GetProjection():
            raise InputError(f"The raster {path} has no CRS.", hint="Assign its CRS (Raster > Projections).")
        return cls(str(path), ds.RasterXSize, ds.RasterYSize, tuple(gt), ds.GetProjection(), ds.RasterCount)

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        return x0, y0 + self.height * dy, x0 + self.width * dx, y0

    @property
    def pixel_size(self) -> float:
        return abs(self.geotransform[1])

    def window_bounds(self, x: int, y: int, size: int) -> Tuple[float, float, float, float]:
        """(W, S, E, N) of the size x size window at column x, row y."""
        x0, dx, _, y0, _, dy = self.geotransform
        return x0 + x * dx, y0 + (y + size) * dy, x0 + (x + size) * dx, y0 + y * dy

    def read(self, x: int, y: int, size: int, bands: Sequence[int]) -> np.ndarray:
        """[len(bands), size, size] float32 raw values, zero past the raster's edge."""
        from osgeo import gdal

        out = np.zeros((len(bands), size, size), dtype=np.float32)
        w, h = min(size, self.width - x), min(size, self.height - y)
        if w > 0 and h > 0:
            ds = gdal.Open(self.path)
            out[:, :h, :w] = ds.ReadAsArray(x, y, w, h, band_list=list(bands)).reshape(len(bands), h, w)
        return out


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

    def targets(self, class_ids: np.ndarray, held_out: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per-window class targets [n, size, size] int16 for training and for validation (IGNORE elsewhere).

        Validation targets exist only on the validation grid, so each held-out pixel counts once.
        """
        lut_train = np.r_[IGNORE, np.where(held_out, IGNORE, class_ids)].astype(np.int16)
        lut_val = np.r_[IGNORE, np.where(held_out, class_ids, IGNORE)].astype(np.int16)
        train = lut_train[self.polygon_ids]
        val = lut_val[self.polygon_ids]
        val[~self.on_val_grid] = IGNORE
        return train, val


def label_windows(labels: LabelSet, grid: RasterGrid, size: int, overlap: int,
                  progress: Optional[Progress] = None) -> LabelWindows:
    """Burn the polygons into every window of the validation and training grids that touches one."""
    progress = progress or Progress()
    if not 0 <= overlap < size:
        raise InputError(f"The window overlap ({overlap}) must be at least 0 and less than the window ({size}).")
    boxes = pixel_boxes(labels, grid.geotransform)
    val_grid = set(grid_windows(boxes, grid.width, grid.height, size, size))
    positions = sorted(val_grid | set(grid_windows(boxes, grid.width, grid.height, size, size - overlap)),
                       key=lambda p: (p[1], p[0]))
    burner = LabelBurner(labels, grid.geotransform, grid.wkt)
    ids = np.zeros((len(positions), size, size), dtype=np.int32)
    for i, (x, y) in enumerate(progress.steps(positions, len(positions), "Rasterising labels")):
        ids[i] = burner.burn(x, y, size, size)
        ids[i, max(0, grid.height - y):, :] = 0
        ids[i, :, max(0, grid.width - x):] = 0
    keep = ids.reshape(len(positions), -1).any(1)
    positions = [p for p, k in zip(positions, keep) if k]
    return LabelWindows(positions, ids[keep], np.array([p in val_grid for p in positions], dtype=bool), size)


def read_windows(grid: RasterGrid, positions: Sequence[Tuple[int, int]], size: int, bands: Sequence[int],
                 normalise: Callable[[np.ndarray], np.ndarray], progress: Progress) -> np.ndarray:
    """[n, C, size, size] float32 normalised pixels of each window."""
    out = np.zeros((len(positions), len(bands), size, size), dtype=np.float32)
    for i, (x, y) in enumerate(progress.steps(positions, len(positions), "Reading windows")):
        out[i] = normalise(grid.read(x, y, size, bands))
    return out
