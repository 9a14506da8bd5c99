"""Reading labelled polygons: class field, reprojection to the raster's CRS, checks, class colours.

Overlap rule: where polygons of different classes overlap, the SMALLER polygon wins (it is burnt
last), so a building drawn inside a field polygon keeps its class. Same-class overlaps are harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import InputError, opt
from ..progress import Progress
from ..raster.styles import hue_colour

# Colours for common land-cover names; any other class takes the next colour of PALETTE.
NAMED_COLORS = {
    "water": "#1f78b4", "sea": "#1f78b4", "marsh": "#8c6bb1", "wetland": "#8c6bb1", "forest": "#1b7837",
    "tree": "#1b7837", "trees": "#1b7837", "cropland": "#e6ab02", "crop": "#e6ab02", "farmland": "#e6ab02",
    "grass": "#a6d96a", "grassland": "#a6d96a", "sand": "#f4e3a1", "beach": "#f4e3a1", "bare": "#bf812d",
    "built-up": "#e31a1c", "urban": "#e31a1c", "building": "#e31a1c", "road": "#636363",
}
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd"]


@dataclass
class LabelSet:
    """Polygons in the raster's CRS (WKB), the class index of each, and the classes [{name, color}]."""

    geometries: List[bytes]
    class_ids: np.ndarray
    classes: List[dict]
    areas: np.ndarray
    centroids: np.ndarray  # [N, 2] map coordinates
    source_crs: str = ""
    warnings: List[str] = field(default_factory=list)
    split_values: Optional[List[str]] = None  # the split field's value of each polygon, when one was read

    @property
    def class_names(self) -> List[str]:
        return [c["name"] for c in self.classes]


def class_colors(names: Sequence[str], given: Optional[Dict[str, str]] = None) -> List[dict]:
    """[{name, color}] using the colours given (e.g. a QGIS categorized style), then known names, then PALETTE."""
    given = {str(k): v for k, v in (given or {}).items()}
    out, used = [], set()
    for name in names:
        color = given.get(name)
        if color is None:
            color = NAMED_COLORS.get(name.strip().lower())
            if color is None or color in used:
                color = next((c for c in PALETTE if c not in used), None) or hue_colour(len(out))
        used.add(color)
        out.append({"name": name, "color": color})
    return out


def _sorted_classes(values: Sequence) -> List[str]:
    """Integers in numeric order, text in alphabetical order; names are strings either way."""
    unique = set(values)
    if all(isinstance(v, (int, np.integer)) for v in unique):
        return [str(v) for v in sorted(unique)]
    return sorted({str(v) for v in unique})


def refuse_measurement_field(field: str, is_float: bool, classes: int, polygons: int) -> None:
    """A field with (nearly) one value per polygon is an identifier or a measurement (an area, a height), not a
    class: training on it would make each polygon a class of its own."""
    if (is_float and polygons >= 6 and classes > polygons / 2) or (polygons >= 20 and classes == polygons):
        kind = "a decimal-number field" if is_float else "a field"
        raise InputError(f"The class field {field!r} is {kind} with {classes} different values for {polygons} "
                         "polygons: it looks like a measurement or an identifier, not a class.",
                         hint="Choose the field that names each polygon's class (a land-cover name or class "
                              "number shared by many polygons).", option="class_field")


def read_labels(path: str, class_field: str, raster_wkt: str, raster_bounds: Tuple[float, float, float, float],
                colors: Optional[Dict[str, str]] = None, progress: Optional[Progress] = None,
                split_field: Optional[str] = None) -> LabelSet:
    """Read polygons and their class from `class_field`, reprojected to the raster's CRS and checked.

    Refused with InputError: an unreadable file, no such field, no usable class value, a single class,
    no polygon over the raster. Warned about (kept going): features with an empty class, non-polygons,
    polygons outside the raster, a layer without a CRS (taken as the raster's).
    """
    progress = progress or Progress()
    ds = _open_vector(path)
    layer = ds.GetLayer(0)
    class_type = _check_fields(layer, class_field, split_field)
    source, transform = _layer_crs(layer, raster_wkt)
    read = _read_polygons(layer, class_field, class_type, split_field, transform, raster_bounds)
    ds = None
    warnings = [] if source is not None else ["The labelled polygons have no CRS; taken to be the raster's."]
    warnings += read.warnings(class_field)
    names = _class_names(read, class_field, class_type)
    for w in warnings:
        progress.warn(w)
    index = {n: i for i, n in enumerate(names)}
    geoms = read.geometries
    return LabelSet(geometries=[g.ExportToWkb() for g in geoms],
                    class_ids=np.array([index[str(v)] for v in read.values], dtype=np.int64),
                    classes=class_colors(names, colors),
                    areas=np.array([g.GetArea() for g in geoms]),
                    centroids=np.array([g.Centroid().GetPoint_2D() for g in geoms]),
                    source_crs=source.GetName() if source is not None else "", warnings=warnings,
                    split_values=read.splits if split_field else None)


def _open_vector(path: str):
    """The vector data source at `path`; it holds at least one layer (the first is read)."""
    from osgeo import ogr

    ogr.UseExceptions()
    if not path or not Path(path).exists():
        raise InputError(f"Labelled polygons not found: {path}")
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read the labelled polygons {path}: {exc}") from None
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"{path} holds no vector layer.")
    return ds


def _check_fields(layer, class_field: str, split_field: Optional[str]) -> int:
    """Refuse a class or split field the layer does not have; return the class field's OGR type."""
    defn = layer.GetLayerDefn()
    fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    if not class_field:
        raise InputError("No class field given.", hint="Fields of the layer: " + (", ".join(fields) or "none") + ".")
    if class_field not in fields:
        raise InputError(f"The labelled polygons have no field {class_field!r}.",
                         hint="Fields of the layer: " + (", ".join(fields) or "none") + ".")
    if split_field and split_field not in fields:
        raise InputError(f"The labelled polygons have no field {split_field!r} (the split field).",
                         hint="Fields of the layer: " + ", ".join(fields) + ".")
    return defn.GetFieldDefn(fields.index(class_field)).GetType()


def _layer_crs(layer, raster_wkt: str):
    """(the layer's CRS, or None when it has none; the transformation to the raster's CRS, or None when the
    same or unknown)."""
    from osgeo import osr

    target = osr.SpatialReference()
    target.ImportFromWkt(raster_wkt)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    source = layer.GetSpatialRef()
    if source is None or source.IsLocal() or (source.GetName() or "").startswith("Undefined"):  # GeoPackage srs 0/-1
        return None, None
    source = source.Clone()
    source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return source, None if source.IsSame(target) else osr.CoordinateTransformation(source, target)


@dataclass
class _Polygons:
    """The polygons kept (in the raster's CRS) with their class and split values, and counts of those left out."""

    geometries: list = field(default_factory=list)
    values: list = field(default_factory=list)
    splits: List[str] = field(default_factory=list)
    empty: int = 0
    not_polygon: int = 0
    outside: int = 0

    def warnings(self, class_field: str) -> List[str]:
        said = []
        if self.empty:
            said.append(f"{self.empty} polygon(s) with an empty {class_field!r} were left out.")
        if self.not_polygon:
            said.append(f"{self.not_polygon} feature(s) that are not polygons were left out.")
        if self.outside:
            said.append(f"{self.outside} polygon(s) outside the raster were left out.")
        return said


def _read_polygons(layer, class_field: str, class_type: int, split_field: Optional[str], transform,
                   raster_bounds: Tuple[float, float, float, float]) -> _Polygons:
    """The layer's polygons with a class value, reprojected, repaired and kept where they meet the raster."""
    from osgeo import ogr

    raster_box = ogr.CreateGeometryFromWkt(
        "POLYGON(({0} {1},{2} {1},{2} {3},{0} {3},{0} {1}))".format(*raster_bounds))
    is_int = class_type in (ogr.OFTInteger, ogr.OFTInteger64)
    read = _Polygons()
    for feat in layer:
        value = feat.GetField(class_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            read.empty += 1
            continue
        geom = feat.GetGeometryRef()
        if geom is None or ogr.GT_Flatten(geom.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            read.not_polygon += 1
            continue
        geom = _on_raster(geom, transform, raster_box)
        if geom is None:
            read.outside += 1
            continue
        read.geometries.append(geom)
        read.values.append(int(value) if is_int else str(value).strip())
        if split_field:
            read.splits.append(str(feat.GetField(split_field) or ""))
    return read


def _on_raster(geom, transform, raster_box):
    """A 2D copy of `geom` in the raster's CRS, made valid; None when it falls outside the raster."""
    geom = geom.Clone()
    geom.FlattenTo2D()
    if transform is not None:
        try:
            geom.Transform(transform)
        except RuntimeError:  # outside the domain of the raster's projection
            return None
    if not geom.IsValid():
        geom = geom.Buffer(0)
    return geom if geom.Intersects(raster_box) else None


def _class_names(read: _Polygons, class_field: str, class_type: int) -> List[str]:
    """The classes, sorted (_sorted_classes); refused when no polygon is left, the field looks like a measurement
    or an identifier, or it holds a single class."""
    from osgeo import ogr

    if not read.geometries:
        if read.outside:
            raise InputError("None of the labelled polygons lies over the raster.",
                             hint="Check that the polygons and the raster cover the same place (and their CRS).")
        raise InputError(f"No polygon has a value in the class field {class_field!r}.",
                         hint="Fill the class field of the polygons you drew, or choose another field.")
    names = _sorted_classes(read.values)
    refuse_measurement_field(class_field, class_type == ogr.OFTReal, len(names), len(read.values))
    if len(names) < 2:
        raise InputError(f"Only one class ({names[0]!r}) in {class_field!r}: a classifier needs at least two.",
                         hint="Draw polygons of the other land covers too (e.g. what is NOT this class).")
    return names


def parse_colors(value) -> Optional[Dict[str, str]]:
    """--colors as a dict (the worker) or JSON text (the command line)."""
    if value is None or isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InputError(f"{opt('colors')} must be a JSON object such as " '{"water": "#1f78b4"}.')
    return {str(k): str(v) for k, v in parsed.items()}
