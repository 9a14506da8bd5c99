"""`zones --compare-osm`: each zone's class according to OSM next to the predicted one, a review queue for mappers.

The OSM polygons over the raster are classed with a tag map (the one the model was trained with, from its
card, or --tag-map) and burnt on the class map's grid, smaller polygons last (they win, as in training).
A zone whose pixels are less than MIN_OSM_SHARE covered by classed OSM polygons is `missing in OSM`
(nobody mapped its land use); otherwise its OSM class is the majority of those pixels, and the zone
`agrees` when that is the predicted class and `disagrees` when not (the OSM may be outdated, or the
model wrong: either way, worth a look).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import shapely

from ..errors import InputError
from .format import POLYGON
from .read import OsmFeatures
from .tagmap import DATA, TagMap, load_tag_map, parse_tag_map

MIN_OSM_SHARE = 0.5
MISSING, AGREES, DISAGREES = "missing in OSM", "agrees", "disagrees"
REVIEW_FIELDS = ("osm_class", "osm_share", "osm_review")
NODATA = 255


def tag_map_for(card, given: Optional[str]) -> TagMap:
    """--tag-map when given, else the tag map the model was trained with (its card's provenance)."""
    if given:
        return load_tag_map(given)
    recorded = (card.provenance or {}).get("tag_map")
    if not isinstance(recorded, dict):
        raise InputError("--compare-osm needs to know which OSM tags make which class, and this model was not "
                         "trained from OSM.", hint="Give --tag-map landcover, urban-function or a JSON file.")
    return parse_tag_map({"classes": recorded.get("classes")}, str(recorded.get("source") or "the model's tag map"))


def burn_osm_classes(features: OsmFeatures, tag_map: TagMap, like, path: Path) -> int:
    """OSM polygons' tag-map class (0..n-1; NODATA elsewhere) on the grid of the dataset `like`, largest polygons
    first. Returns how many polygons were burnt."""
    from osgeo import gdal, ogr, osr

    gdal.UseExceptions()
    ids = tag_map.match_all(features.labels)
    keep = np.flatnonzero((features.kinds == POLYGON) & (ids >= 0))
    ds = gdal.GetDriverByName("GTiff").Create(str(path), like.RasterXSize, like.RasterYSize, 1, gdal.GDT_Byte,
                                              options=["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform(like.GetGeoTransform())
    ds.SetProjection(like.GetProjection())
    ds.GetRasterBand(1).Fill(NODATA)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("osm")
    layer = mem.CreateLayer("osm", osr.SpatialReference(wkt=like.GetProjection()), ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("cls", ogr.OFTInteger))
    for i in keep[np.argsort(-shapely.area(features.geoms[keep]), kind="stable")]:
        feat = ogr.Feature(layer.GetLayerDefn())
        feat.SetField(0, int(ids[i]))
        feat.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(features.geoms[i])))
        layer.CreateFeature(feat)
    gdal.RasterizeLayer(ds, [1], layer, options=["ATTRIBUTE=cls"])
    ds.FlushCache()
    return len(keep)


def review(osm_counts: np.ndarray, zone_pixels: np.ndarray, predicted: List[str],
           osm_names: List[str]) -> List[Dict[str, object]]:
    """Per zone: osm_class (None when missing), osm_share (of the zone's pixels) and osm_review (module doc)."""
    out = []
    for counts, pixels, pred in zip(osm_counts, zone_pixels, predicted):
        share = float(min(counts.sum() / max(pixels, 1), 1.0))
        if share < MIN_OSM_SHARE:
            out.append({"osm_class": None, "osm_share": round(share, 4), "osm_review": MISSING})
            continue
        name = osm_names[int(counts.argmax())]
        out.append({"osm_class": name, "osm_share": round(share, 4),
                    "osm_review": AGREES if name == pred else DISAGREES})
    return out


def add_review_fields(gpkg: Path, osm_counts: np.ndarray, osm_names: List[str]) -> Dict[str, int]:
    """Adds osm_class, osm_share and osm_review to every zone of the GeoPackage (zone_id n = row n of osm_counts);
    returns how many zones fall in each review category."""
    from osgeo import ogr

    ogr.UseExceptions()
    ds = ogr.Open(str(gpkg), 1)
    layer = ds.GetLayerByName("zones")
    layer.CreateField(ogr.FieldDefn("osm_class", ogr.OFTString))
    layer.CreateField(ogr.FieldDefn("osm_share", ogr.OFTReal))
    layer.CreateField(ogr.FieldDefn("osm_review", ogr.OFTString))
    feats = list(layer)
    rows = review(osm_counts[[f.GetField("zone_id") - 1 for f in feats]],
                  np.array([f.GetField("pixels") for f in feats]), [f.GetField("class_name") for f in feats],
                  osm_names)
    tally = {MISSING: 0, AGREES: 0, DISAGREES: 0}
    ds.StartTransaction()
    for feat, row in zip(feats, rows):
        for key, value in row.items():
            if value is None:
                feat.SetFieldNull(key)
            else:
                feat.SetField(key, value)
        layer.SetFeature(feat)
        tally[row["osm_review"]] += 1
    ds.CommitTransaction()
    layer = ds = None
    return tally


def review_style() -> str:
    """The review style (package data zones_review.qml): zones filled with the predicted class's colour, faint where
    OSM agrees; a thick magenta outline where OSM disagrees, a thick dashed orange one where OSM has no land use."""
    return (DATA / "zones_review.qml").read_text(encoding="utf-8")
