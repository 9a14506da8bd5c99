"""Small real rasters for the raster tests: crops of the cached Sentinel-2 scene and NEON aerial."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from osgeo import gdal

gdal.UseExceptions()


def crop(src: Path, dst: Path, col: int, row: int, width: int, height: int, nodata: Optional[float] = None,
         bands: Optional[Sequence[int]] = None) -> Path:
    """A GeoTIFF window of a real raster (gdal.Translate -srcwin)."""
    opts = {"srcWin": [col, row, width, height], "creationOptions": ["TILED=YES"]}
    if nodata is not None:
        opts["noData"] = nodata
    if bands:
        opts["bandList"] = list(bands)
    gdal.Translate(str(dst), str(src), **opts)
    return dst


def s2_crop(data_dir: Path, dst: Path, col: int = 700, row: int = 900, size: int = 160, **kw) -> Path:
    return crop(data_dir / "s2" / "s2_rgbn.tif", dst, col, row, size, size, **kw)


def set_nodata_box(path: Path, col: int, row: int, width: int, height: int, value: float = 0) -> None:
    """Burn a nodata box into every band of a raster in place (and declare the nodata value)."""
    ds = gdal.Open(str(path), gdal.GA_Update)
    for b in range(1, ds.RasterCount + 1):
        band = ds.GetRasterBand(b)
        band.SetNoDataValue(value)
        band.WriteArray(np.full((height, width), value, dtype=band.ReadAsArray(0, 0, 1, 1).dtype), col, row)
    ds = None


def read(path: Path, band: int = 1) -> np.ndarray:
    return gdal.Open(str(path)).GetRasterBand(band).ReadAsArray()
