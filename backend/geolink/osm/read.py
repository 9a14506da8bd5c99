"""Reading tagged OSM features from any vector source into one array of single-part geometries.

Layouts (detected per layer from its fields):
- GeoLink: a `label` field holding `key:value;key:value` (the original's GeoJSON files);
- Geofabrik: an `fclass` field (see tags.geofabrik_tags);
- everything else (GDAL's OSM driver on .osm/.pbf, QuickOSM and Overpass exports): every field is a
  tag (one column per key) and `other_tags` is parsed as an hstore. Such a layer must have at
  least one well-known OSM key among its fields or `other_tags`; otherwise it is not read.
  From .osm/.pbf the layers points, lines, multilinestrings and multipolygons are read; route
  relations (type=route in multilinestrings) are skipped as their member ways are in `lines`.

Every feature is reprojected to the target CRS and split into single parts (multi-geometries and
geometry collections alike), each typed by its own dimension (polygon, line, point). Invalid parts
are repaired with make_valid; what the repair leaves of another dimension is dropped (a polygon
that collapses to a line is dropped, not turned into a line), and so are degenerate parts (zero
area or length). Features without any label piece are dropped (tags.py says which tags count).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely

from ..errors import InputError
from ..progress import Progress
from .tags import geofabrik_tags, label_from_tags, label_pieces, parse_hstore

OSM_DRIVER_LAYERS = ("points", "lines", "multilinestrings", "multipolygons")
OSM_KEYS = {
    "highway", "building", "landuse", "natural", "amenity", "leisure", "waterway", "railway", "shop", "tourism",
    "man_made", "place", "barrier", "power", "aeroway", "historic", "boundary", "office", "craft", "military",
    "public_transport", "water", "sport", "route", "emergency", "healthcare", "aerialway", "golf", "wetland",
}
_MULTI_TYPES = (4, 5, 6, 7)  # MultiPoint, MultiLineString, MultiPolygon, GeometryCollection


@dataclass
class OsmFeatures:
    """Single-part geometries (in one CRS) with their kind (POLYGON/LINE/POINT) and GeoLink label, in source order."""

    geoms: np.ndarray
    kinds: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.geoms)

    def take(self, index: np.ndarray) -> OsmFeatures:
        return OsmFeatures(self.geoms[index], self.kinds[index], self.labels[index])

    @staticmethod
    def empty() -> OsmFeatures:
        return OsmFeatures(np.empty(0, dtype=object), np.empty(0, dtype=np.int8), np.empty(0, dtype=object))

    @staticmethod
    def concat(parts: Sequence[OsmFeatures]) -> OsmFeatures:
        parts = [p for p in parts if len(p)]
        if not parts:
            return OsmFeatures.empty()
        return OsmFeatures(np.concatenate([p.geoms for p in parts]), np.concatenate([p.kinds for p in parts]),
                           np.concatenate([p.labels for p in parts]))


def spatial_ref(crs: str):
    """An osr.SpatialReference (x = easting/longitude) from EPSG:xxxx, WKT, PROJ or any GDAL user input."""
    from osgeo import osr

    srs = osr.SpatialReference()
    try:
        failed = srs.SetFromUserInput(str(crs)) != 0
    except RuntimeError:
        failed = True
    if failed:
        raise InputError(f"Unknown CRS {str(crs)[:80]!r}.", hint="Give e.g. EPSG:4326, EPSG:32633 or a WKT string.")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def _explode(geoms: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Split multi-geometries and collections, recursively: (parts, index of each part's source geometry)."""
    source = np.arange(len(geoms))
    while len(geoms) and np.isin(shapely.get_type_id(geoms), _MULTI_TYPES).any():
        geoms, idx = shapely.get_parts(geoms, return_index=True)
        source = source[idx]
    return geoms, source


def _single_parts(geoms: np.ndarray, dims: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Single parts of `geoms` that have the dimension in `dims` and are not degenerate, with their source index."""
    geoms, source = _explode(geoms)
    part_dims = shapely.get_dimensions(geoms)
    size = np.where(part_dims == 2, shapely.area(geoms), np.where(part_dims == 1, shapely.length(geoms), 1.0))
    keep = (part_dims == dims[source]) & (size > 0) & ~shapely.is_empty(geoms)
    return geoms[keep], source[keep]


def _to_features(geoms: np.ndarray, labels: np.ndarray) -> OsmFeatures:
    """Split raw geometries (already in the target CRS) into parts, each typed by its own dimension, then repair
    the invalid ones, keeping what keeps that dimension (module doc)."""
    if not len(geoms):
        return OsmFeatures.empty()
    ok = ~shapely.is_missing(geoms) & (labels != "") & np.isfinite(shapely.bounds(geoms)).all(axis=1)
    parts, source = _explode(geoms[ok])
    labels = labels[ok][source]
    dims = shapely.get_dimensions(parts)
    invalid = ~shapely.is_valid(parts)
    if invalid.any():
        parts = parts.copy()
        parts[invalid] = shapely.make_valid(parts[invalid])
    kept, source = _single_parts(parts, dims)
    return OsmFeatures(kept, (2 - dims[source]).astype(np.int8), labels[source])


class _LayerReader:
    """Turns one OGR layer's features into (WKB, label) rows according to the layer's layout."""

    def __init__(self, layer, target_srs):
        from osgeo import osr

        self.name = layer.GetName()
        defn = layer.GetLayerDefn()
        self.fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        lower = [f.lower() for f in self.fields]
        if "label" in lower:
            self.layout, self.label_index = "geolink", lower.index("label")
        elif "fclass" in lower:
            self.layout = "geofabrik"
        elif "other_tags" in lower or OSM_KEYS & set(lower):
            self.layout = "tags"
        else:
            self.layout = None
        src = layer.GetSpatialRef()
        if src is None:
            src = spatial_ref("EPSG:4326")  # OSM data without a CRS is in WGS 84
        src = src.Clone()
        src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        self.transform = None if src.IsSame(target_srs) else osr.CoordinateTransformation(src, target_srs)
        self.wkbs: List[bytes] = []
        self.labels: List[str] = []

    def add(self, feature) -> None:
        geom = feature.GetGeometryRef()
        if geom is None:
            return
        label = self._label(feature)
        if label:
            self.wkbs.append(bytes(geom.ExportToIsoWkb()))
            self.labels.append(label)

    def _label(self, feature) -> str:
        if self.layout == "geolink":
            value = feature.GetField(self.label_index)
            return ";".join(label_pieces(value)) if value else ""
        values = {name: feature.GetField(i) for i, name in enumerate(self.fields) if feature.IsFieldSetAndNotNull(i)}
        if self.layout == "geofabrik":
            return label_from_tags(geofabrik_tags(self.name, values))
        tags = [(k, str(v)) for k, v in values.items() if k.lower() != "other_tags"]
        tags += parse_hstore(next((v for k, v in values.items() if k.lower() == "other_tags"), None))
        if self.name == "multilinestrings" and ("type", "route") in tags:
            return ""  # a route relation repeats its member ways, which the lines layer already holds
        return label_from_tags(tags)

    def features(self) -> OsmFeatures:
        if not self.wkbs:
            return OsmFeatures.empty()
        geoms = shapely.force_2d(shapely.from_wkb(self.wkbs, on_invalid="ignore"))
        if self.transform is not None:
            ct = self.transform
            geoms = shapely.transform(geoms, lambda xy: np.asarray(ct.TransformPoints(xy), dtype=float)[:, :2])
        return _to_features(geoms, np.array(self.labels, dtype=object))


def read_osm(paths: Sequence[str], target_crs: str, progress: Optional[Progress] = None) -> OsmFeatures:
    """All tagged features of the given files, in `target_crs` (anything spatial_ref accepts), in file, layer and
    row order. Raises InputError for a file that cannot be opened as vectors or holds no OSM-like layer."""
    from osgeo import gdal

    progress = progress or Progress()
    target = spatial_ref(target_crs)
    parts = []
    for n, path in enumerate(paths):
        progress.update(100.0 * n / max(len(paths), 1), f"Reading {Path(path).name}")
        if not Path(path).exists():
            raise InputError(f"OSM file not found: {path}")
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        try:
            ds = gdal.OpenEx(str(path), gdal.OF_VECTOR)
        except RuntimeError:
            ds = None
        finally:
            gdal.PopErrorHandler()
        if ds is None:
            raise InputError(f"{path} is not a vector file GDAL can read.",
                             hint="Give OSM data: .osm/.pbf, or GeoJSON/GeoPackage/Shapefile with OSM tags.")
        gdal.PushErrorHandler("CPLQuietErrorHandler")  # the OSM driver warns about every broken ring it meets
        try:
            parts.append(_read_dataset(ds, path, target, progress))
        finally:
            gdal.PopErrorHandler()
    progress.update(100, "OSM read")
    return OsmFeatures.concat(parts)


def _read_dataset(ds, path: str, target, progress: Progress) -> OsmFeatures:
    osm_driver = ds.GetDriver().ShortName == "OSM"
    readers: Dict[str, _LayerReader] = {}
    for i in range(ds.GetLayerCount()):
        layer = ds.GetLayer(i)
        if osm_driver and layer.GetName() not in OSM_DRIVER_LAYERS:
            continue
        reader = _LayerReader(layer, target)
        if reader.layout is not None:
            readers[reader.name] = reader
    if not readers:
        if all(ds.GetLayer(i).GetFeatureCount() == 0 for i in range(ds.GetLayerCount())):
            return OsmFeatures.empty()  # empty layers carry no columns to recognise: nothing to read, no error
        raise InputError(f"{path} holds no OSM features: no layer has a 'label', 'fclass', 'other_tags' or OSM key "
                         "column (highway, building, landuse, ...).", hint="Is this an OSM export?")
    if osm_driver:  # the OSM driver must be read interleaved, layer by layer it rereads the file
        count = 0
        while True:
            feature, layer = ds.GetNextFeature()
            if feature is None:
                break
            reader = readers.get(layer.GetName())
            if reader is not None:
                reader.add(feature)
            count += 1
            if count % 20000 == 0:
                progress.check_cancelled()
    else:
        for reader in readers.values():
            layer = ds.GetLayerByName(reader.name)
            layer.ResetReading()
            for count, feature in enumerate(layer):
                reader.add(feature)
                if count % 20000 == 0:
                    progress.check_cancelled()
    return OsmFeatures.concat([r.features() for r in readers.values()])


def clip_to_bounds(features: OsmFeatures, bounds: Sequence[float]) -> OsmFeatures:
    """Features cut to the box (W, S, E, N), multi-part results split, parts of another dimension dropped
    (a polygon touching the box along an edge leaves a line: dropped), source order kept."""
    box = shapely.box(*bounds)
    if not len(features):
        return features
    geoms = features.geoms
    outside = ~shapely.covers(box, geoms)
    if outside.any():
        geoms = geoms.copy()
        geoms[outside] = shapely.intersection(geoms[outside], box)
    dims = (2 - features.kinds).astype(np.int64)
    parts, source = _single_parts(geoms, dims)
    return OsmFeatures(parts, features.kinds[source], features.labels[source])


class OsmIndex:
    """Features read once and indexed with an STRtree; `query(bounds)` gives one tile's clipped features."""

    def __init__(self, features: OsmFeatures):
        self.features = features
        self.tree = shapely.STRtree(features.geoms)

    @classmethod
    def from_files(cls, paths: Sequence[str], target_crs_wkt: str, progress: Optional[Progress] = None) -> OsmIndex:
        return cls(read_osm(paths, target_crs_wkt, progress))

    def __len__(self) -> int:
        return len(self.features)

    @property
    def bounds(self) -> Optional[Tuple[float, float, float, float]]:
        """(W, S, E, N) of all features, None when empty."""
        if not len(self.features):
            return None
        return tuple(shapely.total_bounds(self.features.geoms).tolist())

    def query(self, bounds: Sequence[float]) -> OsmFeatures:
        """The features meeting the box (W, S, E, N), clipped to it, in source order."""
        hits = np.sort(self.tree.query(shapely.box(*bounds), predicate="intersects"))
        return clip_to_bounds(self.features.take(hits), bounds)
