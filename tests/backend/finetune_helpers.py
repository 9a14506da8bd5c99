"""Small real inputs for the fine-tuning tests: a raster crop and polygon layers written with GDAL/OGR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Optional, Tuple

from osgeo import gdal, ogr, osr

LABELS = Path(__file__).resolve().parents[1] / "data" / "labels" / "s2_virginia_labels.geojson"
UTM18N = 32618


def crop_raster(src: Path, out: Path, x: int, y: int, size: int) -> Path:
    """A size x size GeoTIFF cut from `src` at column x, row y."""
    gdal.UseExceptions()
    gdal.Translate(str(out), str(src), srcWin=[x, y, size, size])
    return out


def write_polygons(path: Path, features: Iterable[Tuple[Optional[object], list]], epsg: Optional[int] = UTM18N,
                   field_type: int = ogr.OFTString, field: str = "class") -> Path:
    """Polygons given as (class value, [(x, y), ...] ring) into a GeoPackage (epsg None: no CRS)."""
    ogr.UseExceptions()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = None
    if epsg:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn(field, field_type))
    for value, ring in features:
        feat = ogr.Feature(layer.GetLayerDefn())
        if value is not None:
            feat.SetField(field, value)
        wkt = "POLYGON((" + ",".join(f"{x} {y}" for x, y in list(ring) + [ring[0]]) + "))"
        feat.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feat)
    ds = None
    return path


def box(x0: float, y0: float, x1: float, y1: float) -> list:
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


def labels_in_crop(out: Path, x: int, y: int, size: int) -> Path:
    """The committed labels whose pixel box lies inside the crop at (x, y), as GeoJSON."""
    fc = json.loads(LABELS.read_text())
    x0, y0 = 435730 + 10 * x, 4179460 - 10 * y
    x1, y1 = x0 + 10 * size, y0 - 10 * size
    keep = [f for f in fc["features"]
            if all(x0 <= px <= x1 and y1 <= py <= y0 for px, py in f["geometry"]["coordinates"][0])]
    fc["features"] = keep
    out.write_text(json.dumps(fc))
    return out
