"""Reading pretraining imagery as uint8 RGB through GDAL (any format and data type).

8-bit images are used as they are. Other data types (Sentinel-2 reflectance, 16-bit aerials) are
stretched per band from the raster's own 2nd-98th percentiles to 0-255, the way RGB exports such as
the paper's JPEG tiles look; `STRETCH` records the rule in model cards.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError, opt

STRETCH = {"rule": "uint8 as is; other types: per band 2-98 percentile stretch of the raster to 0-1",
           "low_percentile": 2.0, "high_percentile": 98.0}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _open(path: os.PathLike):
    from osgeo import gdal

    gdal.UseExceptions()
    try:
        return gdal.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read image {path}: {exc}") from None


@dataclass
class RasterImage:
    """A raster opened for windowed uint8 reads of three bands (1-based indices)."""

    path: str
    bands: Sequence[int] = (1, 2, 3)
    ds: object = field(init=False, repr=False)
    scale: Optional[List[Tuple[float, float]]] = field(init=False, default=None)

    def __post_init__(self):
        self.ds = _open(self.path)
        if max(self.bands) > self.ds.RasterCount:
            raise InputError(f"{self.path} has {self.ds.RasterCount} band(s); bands {list(self.bands)} were asked for.",
                             hint=f"Set {opt('bands')} to three band numbers for red, green and blue.")
        if self.ds.GetRasterBand(self.bands[0]).DataType != 1:  # not Byte
            self.scale = [self._percentiles(b) for b in self.bands]

    @property
    def size(self) -> Tuple[int, int]:
        return self.ds.RasterXSize, self.ds.RasterYSize

    @property
    def geotransform(self) -> Tuple[float, ...]:
        return self.ds.GetGeoTransform()

    @property
    def crs_wkt(self) -> str:
        return self.ds.GetProjection()

    def _percentiles(self, band: int) -> Tuple[float, float]:
        b = self.ds.GetRasterBand(band)
        step = max(1, max(self.size) // 1024)
        data = b.ReadAsArray(buf_xsize=max(1, self.size[0] // step), buf_ysize=max(1, self.size[1] // step))
        data = data.astype(np.float64)
        nodata = b.GetNoDataValue()
        valid = data[np.isfinite(data) & ((data != nodata) if nodata is not None else True)]
        if valid.size == 0:
            raise InputError(f"{self.path}: band {band} has no valid pixels.")
        lo, hi = np.percentile(valid, [STRETCH["low_percentile"], STRETCH["high_percentile"]])
        return float(lo), float(max(hi, lo + 1e-6))

    def read(self, col: int, row: int, width: int, height: int) -> torch.Tensor:
        """[3, height, width] uint8 for a window inside the raster."""
        planes = []
        for i, band in enumerate(self.bands):
            a = self.ds.GetRasterBand(band).ReadAsArray(col, row, width, height)
            if self.scale is not None:
                lo, hi = self.scale[i]
                a = np.clip((a.astype(np.float32) - lo) / (hi - lo), 0.0, 1.0) * 255.0 + 0.5
            planes.append(a.astype(np.uint8))
        return torch.from_numpy(np.stack(planes))


def read_image(path: os.PathLike, bands: Sequence[int] = (1, 2, 3)) -> torch.Tensor:
    """A whole image file as [3, H, W] uint8 (a single-band image is repeated to three)."""
    ds = _open(path)
    if ds.RasterCount < 3:
        bands = (1, 1, 1)
    raster = RasterImage(str(path), bands)
    return raster.read(0, 0, *raster.size)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [0, 1] -> ImageNet mean/std normalisation (what GeoLink's encoders expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
