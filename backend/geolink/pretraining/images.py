"""Reading pretraining imagery as uint8 RGB: raster.Source's reading and its stretch, scaled to 0-255.

8-bit images are used as they are. Other data types (Sentinel-2 reflectance, 16-bit aerials) are
stretched per band from the raster's own 2nd-98th percentiles to 0-255 (Source.normaliser's rule for
them), the way RGB exports such as the paper's JPEG tiles look; `STRETCH` records the rule in model cards.
"""

from __future__ import annotations

import os
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..errors import InputError, opt
from ..models.card import IMAGENET_MEAN, IMAGENET_STD
from ..raster.source import Source

STRETCH = {"rule": "uint8 as is; other types: per band 2-98 percentile stretch of the raster to 0-1",
           "low_percentile": 2.0, "high_percentile": 98.0}


class RasterImage:
    """A raster opened for windowed uint8 reads of three bands (1-based indices; default the first three, or
    the one band repeated). `georeferenced=False` takes any image as a plain pixel grid."""

    def __init__(self, path: str, bands: Optional[Sequence[int]] = None, georeferenced: bool = False):
        self.source = Source(path, georeferenced=georeferenced)
        bands = bands or ((1, 2, 3) if self.source.band_count >= 3 else (1, 1, 1))
        if max(bands) > self.source.band_count:
            raise InputError(f"{path} has {self.source.band_count} band(s); bands {list(bands)} were asked for.",
                             hint=f"Set {opt('bands')} to three band numbers for red, green and blue.")
        self.bands = list(bands)
        self.stretch = self.source.normaliser({"mean": 0.0, "std": 1.0, **STRETCH}, self.bands)

    @property
    def size(self) -> Tuple[int, int]:
        return self.source.width, self.source.height

    def read(self, col: int, row: int, width: int, height: int) -> torch.Tensor:
        """[3, height, width] uint8 for a window inside the raster."""
        raw, _ = self.source.read(self.bands, col, row, width, height)
        return torch.from_numpy((self.stretch(raw) * 255.0 + 0.5).astype(np.uint8))


def read_image(path: os.PathLike) -> torch.Tensor:
    """A whole image file as [3, H, W] uint8 (a single-band image is repeated to three)."""
    raster = RasterImage(str(path))
    return raster.read(0, 0, *raster.size)


def normalise(images: torch.Tensor) -> torch.Tensor:
    """[B,3,H,W] in [0, 1] -> ImageNet mean/std normalisation (what GeoLink's encoders expect)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std
