"""The raster a task reads: opened and checked, cut to a processing extent, resampled to a ground sample
distance, with its bands chosen and normalised the way a model card says.

Resampling and cutting go through GDAL virtual rasters (VRT), so nothing is read until a window is:
memory does not grow with the raster.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, opt
from ..models.card import IMAGENET_MEAN, IMAGENET_STD
from .crs import metres_per_unit

COLOR_NAMES = {"red": 3, "green": 4, "blue": 5, "nir": None}  # gdal.GCI_RedBand etc.


CACHE_MAX = 128 * 2**20  # GDAL block cache: a strip of 20,000 px windows and a row of output blocks fit


def _gdal():
    from osgeo import gdal

    gdal.UseExceptions()
    if gdal.GetConfigOption("GDAL_CACHEMAX") is None and gdal.GetCacheMax() > CACHE_MAX:
        gdal.SetCacheMax(CACHE_MAX)  # its default (5% of RAM) would let memory grow with the raster
    return gdal


def parse_extent(text: Optional[str]) -> Optional[Tuple[float, float, float, float]]:
    """'xmin,ymin,xmax,ymax' (QGIS also appends ' [EPSG:xxxx]', ignored) -> floats in the raster's CRS."""
    if not text:
        return None
    text = re.sub(r"\[.*\]", "", str(text))
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise InputError(f"The processing extent must be xmin,ymin,xmax,ymax with xmin < xmax and ymin < ymax; "
                         f"got {text!r}.")
    return values


def parse_band_list(text: Optional[str]) -> Optional[List[int]]:
    """'4,3,2' -> [4, 3, 2] (1-based raster band numbers, in the order the model wants its bands)."""
    if text in (None, "", []):
        return None
    items = text if isinstance(text, (list, tuple)) else re.split(r"[,\s]+", str(text).strip())
    try:
        bands = [int(b) for b in items if str(b).strip()]
    except ValueError:
        raise InputError(f"{opt('bands')} must be band numbers like 4,3,2; got {text!r}.") from None
    if not bands or min(bands) < 1:
        raise InputError(f"{opt('bands')} must be band numbers from 1; got {text!r}.")
    return bands


@dataclass
class Normaliser:
    """Raw band values -> model input: per-band linear stretch of [low, high] to [0, 1], then (x - mean) / std.

    The card's "normalisation" may give "low"/"high" (one per band or one for all: always used), "scale"
    (high, with low = 0: used for 8-bit rasters, and for any raster when "stretch" is "fixed"), and
    "low_high_dtype" (when set, low/high hold only for rasters of that GDAL data type, e.g. "UInt16":
    a fine-tuned package records the stretch it was trained with this way), and
    "mean"/"std" (default ImageNet's for 3 bands). Otherwise 8-bit rasters are taken as 0-255 and other
    types (uint16 reflectance, float) are stretched from the raster's own 2nd-98th percentiles
    ("low_percentile"/"high_percentile"), the rule the pretraining uses for them.
    """

    low: np.ndarray
    high: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    clip: bool = True

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        """[..., C, H, W] raw -> float32 normalised."""
        shape = (-1, 1, 1)
        x = (raw.astype(np.float32) - self.low.reshape(shape)) / (self.high - self.low).reshape(shape)
        x = np.clip(x, 0.0, 1.0) if self.clip else x
        return (x - self.mean.reshape(shape)) / self.std.reshape(shape)

    def describe(self) -> str:
        lo = ", ".join(f"{v:g}" for v in self.low)
        hi = ", ".join(f"{v:g}" for v in self.high)
        return f"stretch [{lo}] - [{hi}] to 0-1, then mean/std"


def _per_band(value, n: int, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise InputError(f"The model card's normalisation gives {arr.size} {what} values for {n} bands.")
    return arr


class Source:
    """A north-up raster with a CRS, possibly cut and resampled (a VRT), read by rows of pixels. With
    `georeferenced=False` any image is taken as a plain pixel grid (pretraining pairs' JPEG tiles)."""

    def __init__(self, path: str, extent: Optional[Sequence[float]] = None, gsd: Optional[float] = None,
                 resampling: str = "bilinear", georeferenced: bool = True):
        gdal = _gdal()
        self.path = str(path)
        if not Path(self.path).exists() and not self.path.startswith("/vsi"):
            raise InputError(f"Raster not found: {self.path}")
        problems, ds = [], None
        gdal.PushErrorHandler(lambda level, code, msg: problems.append(msg) if level >= gdal.CE_Warning else None)
        try:
            ds = gdal.Open(self.path)
            if ds is not None and ds.RasterCount:  # a truncated file opens but fails on its last block
                band = ds.GetRasterBand(1)
                band.ReadAsArray(ds.RasterXSize - 1, ds.RasterYSize - 1, 1, 1)
        except RuntimeError as exc:
            problems.insert(0, str(exc).splitlines()[0])
        finally:
            gdal.PopErrorHandler()
        damaged = [m for m in problems if "error" in m.lower() or "not recognized" in m.lower()]
        if damaged or ds is None:
            reason = (damaged or problems or ["GDAL does not recognise its format"])[0]
            raise InputError(f"Cannot read the raster {Path(self.path).name}: {reason}",
                             hint="Is it a complete raster file GDAL can open (GeoTIFF, JP2, VRT, ...)? "
                                  "It may be damaged or still being written.")
        if ds.RasterCount == 0:
            raise InputError(f"{self.path} holds no raster bands.")
        self.original = ds
        gt = ds.GetGeoTransform(can_return_null=True)
        if georeferenced and (gt is None or not ds.GetProjection()):
            raise InputError(f"The raster {Path(self.path).name} has no CRS or georeferencing.",
                             hint="Assign its CRS (QGIS: Raster > Projections > Assign Projection) "
                                  "or georeference it first.")
        if georeferenced and (gt[2] or gt[4] or gt[5] >= 0):
            raise InputError(f"The raster {Path(self.path).name} is rotated or not north-up.",
                             hint="Warp it to a north-up grid first (QGIS: Raster > Projections > Warp).")
        gt = gt or ds.GetGeoTransform()
        self.native_pixel = (gt[1], abs(gt[5]))
        self.ds = self._prepare(ds, extent, gsd, resampling)
        self.width, self.height = self.ds.RasterXSize, self.ds.RasterYSize
        self.geotransform = tuple(self.ds.GetGeoTransform())
        self.wkt = self.ds.GetProjection()
        self.band_count = self.ds.RasterCount

    def _prepare(self, ds, extent, gsd, resampling):
        gdal = _gdal()
        gt = ds.GetGeoTransform()
        full = (gt[0], gt[3] + ds.RasterYSize * gt[5], gt[0] + ds.RasterXSize * gt[1], gt[3])
        if extent is not None:
            box = (max(full[0], extent[0]), max(full[1], extent[1]), min(full[2], extent[2]), min(full[3], extent[3]))
            if box[0] >= box[2] or box[1] >= box[3]:
                raise InputError(f"The processing extent {tuple(extent)} does not overlap the raster "
                                 f"({', '.join(f'{v:.2f}' for v in full)}).",
                                 hint=f"Give {opt('extent')} in the raster's CRS.")
        else:
            box = full
        yres = None
        if gsd:
            metres = gsd
            east, north = metres_per_unit(ds.GetProjection(), (full[1] + full[3]) / 2)
            gsd, yres = gsd / east, gsd / north  # square on the ground: a geographic CRS's degrees differ
            across = min((box[2] - box[0]) / gsd, (box[3] - box[1]) / yres)
            if across < 1:
                raise InputError(f"{opt('gsd', format(metres, 'g'))} m is coarser than the raster (or the processing "
                                 "extent) is wide: it would leave less than one pixel across.",
                                 hint=f"Give a {opt('gsd')} below {metres * across:.4g} m (0: the model's).",
                                 option="gsd")
        resample = gsd is not None and gsd > 0 and not math.isclose(gsd, gt[1], rel_tol=0.02)
        if not resample and box == full:
            return ds
        if not resample:
            # snap the box outwards to the pixel grid so pixels stay exactly the source's
            c0 = math.floor((box[0] - gt[0]) / gt[1] + 1e-9)
            c1 = math.ceil((box[2] - gt[0]) / gt[1] - 1e-9)
            r0 = math.floor((box[3] - gt[3]) / gt[5] + 1e-9)
            r1 = math.ceil((box[1] - gt[3]) / gt[5] - 1e-9)
            return gdal.Translate("", ds, format="VRT", srcWin=[c0, r0, c1 - c0, r1 - r0])
        alg = "average" if gsd > gt[1] else resampling
        nodata = ds.GetRasterBand(1).GetNoDataValue()
        opts = dict(format="VRT", xRes=gsd, yRes=yres, outputBounds=box, resampleAlg=alg, multithread=False)
        if nodata is not None:
            opts.update(srcNodata=nodata, dstNodata=nodata)
        return gdal.Warp("", ds, **opts)

    @property
    def pixel_size(self) -> float:
        return self.geotransform[1]

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        return x0, y0 + self.height * dy, x0 + self.width * dx, y0

    def window_bounds(self, col: int, row: int, width: int, height: int) -> Tuple[float, float, float, float]:
        x0, dx, _, y0, _, dy = self.geotransform
        return x0 + col * dx, y0 + (row + height) * dy, x0 + (col + width) * dx, y0 + row * dy

    def choose_bands(self, wanted: Sequence[str], mapping: Optional[List[int]]) -> List[int]:
        """1-based bands feeding the model's `wanted` bands: the mapping if given, else by colour
        interpretation, else the first ones; a raster with too few bands is refused."""
        n = len(wanted)
        if mapping:
            if len(mapping) != n:
                raise InputError(f"{opt('bands')} gives {len(mapping)} band(s) but the model takes {n} "
                                 f"({', '.join(wanted)}).")
            if max(mapping) > self.band_count:
                raise InputError(f"{opt('bands')} asks for band {max(mapping)} but the raster has {self.band_count}.")
            return list(mapping)
        if self.band_count < n:
            raise InputError(f"The raster has {self.band_count} band(s) but the model takes {n} "
                             f"({', '.join(wanted)}).",
                             hint=f"Map bands with {opt('bands')} (e.g. {opt('bands', '1,1,1')} for a grey image) "
                                  "or use a model made for this sensor.")
        interp = [self.ds.GetRasterBand(i + 1).GetColorInterpretation() for i in range(self.band_count)]
        by_colour = [interp.index(COLOR_NAMES[w.lower()]) + 1 if COLOR_NAMES.get(w.lower()) in interp else None
                     for w in wanted]
        if all(b is not None for b in by_colour) and len(set(by_colour)) == n:
            return by_colour
        return list(range(1, n + 1))

    def normaliser(self, norm: dict, bands: Sequence[int]) -> Normaliser:
        """The Normaliser of a model card's `normalisation` for these bands of this raster."""
        n = len(bands)
        mean = _per_band(norm.get("mean", IMAGENET_MEAN if n == 3 else 0.0), n, "mean")
        std = _per_band(norm.get("std", IMAGENET_STD if n == 3 else 1.0), n, "std")
        byte = self.ds.GetRasterBand(bands[0]).DataType == _gdal().GDT_Byte
        fitted_on = norm.get("low_high_dtype")  # a stretch fitted on training data holds for that data type only
        fixed = ("low" in norm or "high" in norm) and fitted_on in (None, self.dtype_name(bands))
        if fixed:
            low = _per_band(norm.get("low", 0.0), n, "low")
            high = _per_band(norm.get("high", norm.get("scale", 255.0)), n, "high")
        elif "scale" in norm and (byte or norm.get("stretch") == "fixed"):
            low, high = np.zeros(n, np.float32), _per_band(norm["scale"], n, "scale")
        elif byte:
            low, high = np.zeros(n, np.float32), np.full(n, 255.0, np.float32)
        else:
            lo_p = float(norm.get("low_percentile", 2.0))
            hi_p = float(norm.get("high_percentile", 98.0))
            low, high = self.percentiles(bands, lo_p, hi_p)
        return Normaliser(low, np.maximum(high, low + 1e-6), mean, std, clip=bool(norm.get("clip", True)))

    def percentiles(self, bands: Sequence[int], lo: float, hi: float, samples: int = 64,
                    size: int = 128) -> Tuple[np.ndarray, np.ndarray]:
        """Per-band percentiles from up to `samples` windows spread over the raster (bounded reads)."""
        raws, valids = [], []
        side = max(1, int(math.sqrt(samples)))
        w, h = min(size, self.width), min(size, self.height)
        for gy in range(side):
            for gx in range(side):
                col = int((self.width - w) * (gx + 0.5) / side)
                row = int((self.height - h) * (gy + 0.5) / side)
                raw, valid = self.read(bands, col, row, w, h)
                raws.append(raw.reshape(len(bands), -1))
                valids.append(valid.reshape(-1))
        raw, valid = np.concatenate(raws, 1), np.concatenate(valids)
        if not valid.any():
            raise InputError(f"The raster {Path(self.path).name} has no valid pixels (all nodata).")
        values = raw[:, valid].astype(np.float64)
        q = np.percentile(values, [lo, hi], axis=1).astype(np.float32)
        return q[0], q[1]

    def read(self, bands: Sequence[int], col: int, row: int, width: int, height: int) -> Tuple[np.ndarray, np.ndarray]:
        """([len(bands), height, width] raw, [height, width] valid) for a box that may run past the raster
        (padded with 0, invalid). A pixel is valid when every chosen band's mask says so."""
        raw = np.zeros((len(bands), height, width), dtype=self._dtype(bands))
        valid = np.zeros((height, width), dtype=bool)
        c0, r0 = max(col, 0), max(row, 0)
        c1, r1 = min(col + width, self.width), min(row + height, self.height)
        if c1 <= c0 or r1 <= r0:
            return raw, valid
        sub = (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col))
        ok = np.ones((r1 - r0, c1 - c0), dtype=bool)
        for i, b in enumerate(bands):
            band = self.ds.GetRasterBand(b)
            try:
                data = band.ReadAsArray(c0, r0, c1 - c0, r1 - r0)
            except RuntimeError as exc:
                raise InputError(f"Cannot read band {b} of {Path(self.path).name} at column {c0}, row {r0}: "
                                 f"{str(exc).splitlines()[0]}", hint="The file may be damaged.") from None
            raw[(i, *sub)] = data
            flags = band.GetMaskFlags()
            if flags & _gdal().GMF_ALL_VALID:
                if np.issubdtype(data.dtype, np.floating):
                    ok &= np.isfinite(data)
                continue
            ok &= band.GetMaskBand().ReadAsArray(c0, r0, c1 - c0, r1 - r0) > 0
        valid[sub] = ok
        return raw, valid

    def dtype_name(self, bands: Sequence[int]) -> str:
        """GDAL's name of the bands' data type ("Byte", "UInt16", "Float32"...)."""
        return _gdal().GetDataTypeName(self.ds.GetRasterBand(bands[0]).DataType)

    def _dtype(self, bands: Sequence[int]):
        gdal_array = __import__("osgeo.gdal_array", fromlist=["GDALTypeCodeToNumericTypeCode"])
        types = {gdal_array.GDALTypeCodeToNumericTypeCode(self.ds.GetRasterBand(b).DataType) for b in bands}
        return np.result_type(*types) if types else np.float32

    def resampled_from(self) -> Optional[float]:
        """The native pixel size when this source is resampled, else None."""
        return self.native_pixel[0] if not math.isclose(self.pixel_size, self.native_pixel[0], rel_tol=1e-6) else None

    def metres(self, units: float) -> float:
        """A distance in the raster's CRS units as ground metres (geographic CRS: degrees of longitude at
        the raster's centre latitude, as the --gsd conversion)."""
        bounds = self.bounds
        return units * metres_per_unit(self.wkt, (bounds[1] + bounds[3]) / 2)[0]

    @property
    def pixel_metres(self) -> float:
        """The processing pixel size in ground metres."""
        return self.metres(self.pixel_size)

    def describe_resolution(self) -> str:
        """'0.6 m (native)' or '10 m (resampled from 0.6 m)', in metres whatever the CRS."""
        native = self.resampled_from()
        return f"{metres_text(self.pixel_metres)} " + (
            f"(resampled from {metres_text(self.metres(native))})" if native else "(native)")


GSD_TOLERANCE = 1.5  # a processing pixel more than this factor finer or coarser than the model's is "far" from it


def metres_text(value: float) -> str:
    return f"{value:.3g} m"


def gsd_warning(model_gsd: Optional[float], processing_metres: float, why: str) -> Optional[str]:
    """The warning when a raster is processed far from the resolution the model was trained at (None when near,
    or when the card does not say); `why` names the user's choice that caused it."""
    if not model_gsd:
        return None
    ratio = processing_metres / model_gsd
    if 1 / GSD_TOLERANCE <= ratio <= GSD_TOLERANCE:
        return None
    return (f"The model was trained at {metres_text(model_gsd)} per pixel; this raster is processed at "
            f"{metres_text(processing_metres)} ({why}), {max(ratio, 1 / ratio):.0f}x "
            f"{'coarser' if ratio > 1 else 'finer'}: expect a poor result. Set the ground sample distance to 0 "
            f"(the model's) to resample the raster to {metres_text(model_gsd)}.")
