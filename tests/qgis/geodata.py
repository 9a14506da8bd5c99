"""Small real inputs for the plugin's tests, cut from the cached sample data (no conftest: import what you use)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import List

import pytest
from osgeo import gdal, osr

gdal.UseExceptions()
HELSINKI_UTM35 = (385_250.0, 6_672_900.0)  # upper-left corner of a 960 m square in central Helsinki (EPSG:32635)


def s2_crop(data_dir: Path, out: Path, size: int = 96, offset: int = 800) -> Path:
    """A size x size crop of the real Sentinel-2 scene (4 bands: B2, B3, B4, B8; uint16; UTM 18N)."""
    gdal.Translate(str(out), str(data_dir / "s2" / "s2_rgbn.tif"), srcWin=[offset, offset, size, size])
    return out


def s2_crop_over_helsinki(data_dir: Path, out: Path, size: int = 96) -> Path:
    """The same real pixels, placed over central Helsinki (UTM 35N) so they meet the Helsinki OSM extract.

    The imagery and the OSM are both real but from different places: enough to drive zones and the fused path
    end to end, not to judge the classes.
    """
    s2_crop(data_dir, out, size)
    ds = gdal.Open(str(out), gdal.GA_Update)
    x0, y0 = HELSINKI_UTM35
    ds.SetGeoTransform([x0, 10.0, 0.0, y0, 0.0, -10.0])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32635)
    ds.SetProjection(srs.ExportToWkt())
    ds = None
    return out


def helsinki_pbf(data_dir: Path) -> Path:
    return data_dir / "Helsinki.osm.pbf"


def classified_tif(out: Path, names: List[str], colours: List[tuple], size: int = 32) -> Path:
    """A small classified GeoTIFF as the backend writes one: colour table, category names, nodata 255."""
    import numpy as np

    ds = gdal.GetDriverByName("GTiff").Create(str(out), size, size, 1, gdal.GDT_Byte)
    ds.SetGeoTransform([500_000.0, 10.0, 0.0, 4_200_000.0, 0.0, -10.0])
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32618)
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    table = gdal.ColorTable()
    for i, c in enumerate(colours):
        table.SetColorEntry(i, (*c, 255))
    band.SetColorTable(table)  # before the pixels: GDAL 3.10's GTiff refuses a palette once data is written
    band.SetCategoryNames(names)
    band.SetNoDataValue(255)
    band.WriteArray((np.arange(size * size).reshape(size, size) % len(names)).astype("uint8"))
    ds = None
    return out


def require_task(name: str) -> None:
    """Skip until the backend task exists in this checkout (tasks land in parallel)."""
    from geolink.tasks import TASKS

    if importlib.util.find_spec(TASKS[name]) is None:
        pytest.skip(f"backend task {name!r} is not in this build yet")


def helsinki_osm_near_crop(data_dir: Path, out: Path, size: int = 96) -> Path:
    """The Helsinki OSM lines and polygons around `s2_crop_over_helsinki` as a small GeoPackage (fast to encode)."""
    x0, y0 = HELSINKI_UTM35
    bounds = [x0 - 100, y0 - 10 * size - 100, x0 + 10 * size + 100, y0 + 100]
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32635)
    for i, layer in enumerate(("lines", "multipolygons")):
        gdal.VectorTranslate(str(out), str(helsinki_pbf(data_dir)), format="GPKG", layers=[layer],
                             spatFilter=bounds, spatSRS=srs, accessMode="update" if i else None)
    return out
