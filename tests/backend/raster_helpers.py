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
    ds = gdal.Open(str(path))  # keep the dataset alive while its band is read
    return ds.GetRasterBand(band).ReadAsArray()


def osm_geojson(path: Path, raster: Path, features: Sequence[tuple]) -> Path:
    """A GeoLink-layout OSM GeoJSON (CRS84, `label` column) of (label, [(col, row), ...]) features given in the
    raster's pixel coordinates: one point is a Point, two or more a LineString, a closed ring a Polygon."""
    import json

    from osgeo import osr

    ds = gdal.Open(str(raster))
    gt = ds.GetGeoTransform()
    src = osr.SpatialReference(wkt=ds.GetProjection())
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    dst.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(src, dst)
    out = []
    for label, pixels in features:
        coords = [list(ct.TransformPoint(gt[0] + c * gt[1], gt[3] + r * gt[5])[:2]) for c, r in pixels]
        if len(coords) == 1:
            geom = {"type": "Point", "coordinates": coords[0]}
        elif coords[0] == coords[-1] and len(coords) > 3:
            geom = {"type": "Polygon", "coordinates": [coords]}
        else:
            geom = {"type": "LineString", "coordinates": coords}
        out.append({"type": "Feature", "properties": {"label": label}, "geometry": geom})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": out}))
    return path


def partials(folder: Path) -> list:
    """Files an interrupted atomic writer would leave."""
    return sorted(p.name for p in folder.iterdir() if ".partial-" in p.name)
