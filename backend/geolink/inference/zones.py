"""Zones from a class map: blocks cut out by OSM ways, or sieved class regions; class shares per zone.

Blocks: the raster's extent minus the ways (roads, railways, waterways; footpaths and service
roads left out so they do not split a park or a parking lot) buffered by about a pixel; each
remaining piece is a zone. Without ways in the extent, zones are the class map's regions after a
sieve (gdal.SieveFilter + gdal.Polygonize). Statistics are gathered strip by strip over rasterised
zone numbers, so memory is flat in the raster's size.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import shapely

from ..raster.crs import metres_per_unit

WAY_KEYS = ("highway", "railway", "waterway")
MINOR_WAYS = {"highway:footway", "highway:path", "highway:steps", "highway:cycleway", "highway:bridleway",
              "highway:corridor", "highway:service", "highway:track", "highway:pedestrian", "highway:proposed",
              "highway:construction", "highway:platform", "railway:platform", "railway:abandoned",
              "railway:razed", "railway:proposed", "waterway:ditch", "waterway:drain"}


def way_lines(labels: Sequence[str], kinds: np.ndarray, geoms: np.ndarray) -> np.ndarray:
    """The line features that bound zones (see module doc), from OsmFeatures' arrays."""
    from ..osm.format import LINE

    keep = []
    for i, (label, kind) in enumerate(zip(labels, kinds)):
        if kind != LINE:
            continue
        pieces = [p.strip() for p in str(label).split(";")]
        if any(p.split(":", 1)[0] in WAY_KEYS and p not in MINOR_WAYS for p in pieces):
            keep.append(i)
    return geoms[np.asarray(keep, dtype=np.int64)]


def blocks(ways: np.ndarray, bounds: Sequence[float], width: float, min_area: float) -> List:
    """Polygons of the extent not covered by the ways buffered by width/2, largest first."""
    box = shapely.box(*bounds)
    if len(ways) == 0:
        return []
    cut = shapely.union_all(shapely.buffer(ways, width / 2, quad_segs=2))
    parts = shapely.get_parts(shapely.difference(box, cut))
    parts = parts[(shapely.get_type_id(parts) == 3) & (shapely.area(parts) >= min_area)]
    return sorted(parts, key=lambda g: -g.area)


@dataclass
class ZoneStats:
    counts: np.ndarray  # [zones, classes] pixels
    confidence: np.ndarray  # [zones] sum of max probability


def rasterise_zones(polygons: Sequence, path: Path, like) -> None:
    """Zone numbers 1..n (0 = none) burnt into a GeoTIFF on the grid of the dataset `like`."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    ds = gdal.GetDriverByName("GTiff").Create(str(path), like.RasterXSize, like.RasterYSize, 1, gdal.GDT_UInt32,
                                              options=["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    mem = ogr.GetDriverByName("Memory").CreateDataSource("zones")
    layer = mem.CreateLayer("zones", osr.SpatialReference(wkt=like.GetProjection()), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("zone", ogr.OFTInteger))
    for i, poly in enumerate(polygons, start=1):
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetField(0, i)
        feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(poly)))
        layer.CreateFeature(feat)
    gdal.RasterizeLayer(ds, [1], layer, options=["ATTRIBUTE=zone"])
    ds.FlushCache()


def zone_stats(zones_path: Path, classes_path: Path, confidence_path: Path, n_zones: int, n_classes: int,
               nodata: int, rows: int = 512) -> ZoneStats:
    """Pixels of each class and summed confidence per zone, read in strips."""
    from osgeo import gdal

    zds, cds, pds = (gdal.Open(str(p)) for p in (zones_path, classes_path, confidence_path))
    counts = np.zeros((n_zones + 1) * n_classes, dtype=np.int64)
    conf = np.zeros(n_zones + 1, dtype=np.float64)
    for r0 in range(0, zds.RasterYSize, rows):
        h = min(rows, zds.RasterYSize - r0)
        z = zds.ReadAsArray(0, r0, None, h).astype(np.int64).ravel()
        c = cds.ReadAsArray(0, r0, None, h).astype(np.int64).ravel()
        p = pds.ReadAsArray(0, r0, None, h).astype(np.float64).ravel()
        ok = (z > 0) & (c != nodata)
        counts += np.bincount(z[ok] * n_classes + c[ok], minlength=len(counts))
        conf += np.bincount(z[ok], weights=p[ok], minlength=len(conf))
    return ZoneStats(counts.reshape(n_zones + 1, n_classes)[1:], conf[1:])


def class_regions(classes_path: Path, sieved_path: Path, min_pixels: int) -> List:
    """Polygons of the class map's regions, regions under `min_pixels` merged into their neighbours."""
    from osgeo import gdal, ogr, osr

    src = gdal.Open(str(classes_path))
    sieved = gdal.GetDriverByName("GTiff").CreateCopy(str(sieved_path), src, options=["TILED=YES"])
    band = sieved.GetRasterBand(1)
    gdal.SieveFilter(src.GetRasterBand(1), src.GetRasterBand(1).GetMaskBand(), band, max(min_pixels, 1), 8)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("regions")
    layer = mem.CreateLayer("regions", osr.SpatialReference(wkt=src.GetProjection()), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("class", ogr.OFTInteger))
    gdal.Polygonize(band, band.GetMaskBand(), layer, 0, [], callback=None)
    polys = [shapely.from_wkb(bytes(f.GetGeometryRef().ExportToWkb())) for f in layer]
    return sorted(polys, key=lambda g: -g.area)


FIELDS_FIXED = ("zone_id", "class", "class_name", "color", "confidence", "majority_share", "pixels", "area_m2",
                "origin")


def share_field(name: str) -> str:
    safe = "".join(ch if ch.isalnum() else "_" for ch in name.lower()).strip("_")
    return f"share_{safe or 'class'}"


def ground_area(poly, wkt: str) -> float:
    """Square metres: exact for a projected CRS, a local approximation (at the centroid's latitude) in degrees."""
    x, y = metres_per_unit(wkt, poly.centroid.y)
    return float(poly.area * x * y)


def write_zones_gpkg(path: Path, polygons: Sequence, stats: ZoneStats, classes: Sequence[Dict[str, str]], wkt: str,
                     origin: str, metadata: Dict[str, str]) -> int:
    """Zones with their majority class, class shares and confidence as a GeoPackage layer 'zones'. Zones
    with no valid pixel are left out. Returns the number written."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    srs = osr.SpatialReference(wkt=wkt)
    layer = ds.CreateLayer("zones", srs, ogr.wkbMultiPolygon, options=["GEOMETRY_NAME=geom"])
    types = {"zone_id": ogr.OFTInteger, "class": ogr.OFTInteger, "class_name": ogr.OFTString,
             "color": ogr.OFTString, "confidence": ogr.OFTReal, "majority_share": ogr.OFTReal,
             "pixels": ogr.OFTInteger64, "area_m2": ogr.OFTReal, "origin": ogr.OFTString}
    for name in FIELDS_FIXED:
        layer.CreateField(ogr.FieldDefn(name, types[name]))
    shares = [share_field(c["name"]) for c in classes]
    for name in shares:
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
    written = 0
    ds.StartTransaction()
    for i, poly in enumerate(polygons):
        pixels = int(stats.counts[i].sum())
        if pixels == 0:
            continue
        major = int(stats.counts[i].argmax())
        feat = ogr.Feature(layer.GetLayerDefn())
        values = {"zone_id": i + 1, "class": major, "class_name": classes[major]["name"],
                  "color": classes[major]["color"], "confidence": round(float(stats.confidence[i] / pixels), 4),
                  "majority_share": round(float(stats.counts[i, major] / pixels), 4), "pixels": pixels,
                  "area_m2": round(ground_area(poly, wkt), 2), "origin": origin}
        for k, v in values.items():
            feat.SetField(k, v)
        for name, n in zip(shares, stats.counts[i]):
            feat.SetField(name, round(float(n / pixels), 4))
        feat.SetGeometry(ogr.ForceToMultiPolygon(ogr.CreateGeometryFromWkb(shapely.to_wkb(poly))))
        layer.CreateFeature(feat)
        written += 1
    from ..raster.writer import gdal_problems, write_failure

    with gdal_problems() as problems:  # a full disk shows only here, at commit and close
        if ds.CommitTransaction() != 0 and not problems:
            problems.append("the transaction could not be committed")
        ds.SetMetadata(metadata)
        layer = ds = None
    problems = problems or gpkg_problems(Path(path), "zones", written)
    if problems:
        raise write_failure(Path(path), problems)
    return written


GPKG_TABLES = ("gpkg_spatial_ref_sys", "gpkg_contents", "gpkg_geometry_columns")


def gpkg_problems(path: Path, layer: str, features: int) -> List[str]:
    """What is missing from a written GeoPackage: its required tables, the layer, or some of its rows."""
    import sqlite3

    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            missing = [t for t in (*GPKG_TABLES, layer) if t not in tables]
            if missing:
                return [f"the GeoPackage lacks its table(s) {', '.join(missing)}"]
            quoted = layer.replace('"', '""')  # an identifier cannot be a parameter; this one is in sqlite_master
            rows = db.execute(f'SELECT COUNT(*) FROM "{quoted}"').fetchone()[0]  # nosec B608  a checked table name
    except sqlite3.Error as exc:
        return [f"the GeoPackage cannot be read: {exc}"]
    return [] if rows == features else [f"the layer {layer} holds {rows} of {features} features"]
