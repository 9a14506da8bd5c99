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
    from osgeo import ogr, osr

    progress = progress or Progress()
    ogr.UseExceptions()
    if not path or not Path(path).exists():
        raise InputError(f"Labelled polygons not found: {path}")
    try:
        ds = ogr.Open(str(path))
    except RuntimeError as exc:
        raise InputError(f"Cannot read the labelled polygons {path}: {exc}") from None
    if ds is None or ds.GetLayerCount() == 0:
        raise InputError(f"{path} holds no vector layer.")
    layer = ds.GetLayer(0)
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
    field_type = defn.GetFieldDefn(fields.index(class_field)).GetType()
    is_int = field_type in (ogr.OFTInteger, ogr.OFTInteger64)

    target = osr.SpatialReference()
    target.ImportFromWkt(raster_wkt)
    target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    source = layer.GetSpatialRef()
    warnings: List[str] = []
    transform = None
    if source is None or source.IsLocal() or (source.GetName() or "").startswith("Undefined"):  # GeoPackage srs 0/-1
        source = None
        warnings.append("The labelled polygons have no CRS; taken to be the raster's.")
    else:
        source = source.Clone()
        source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        if not source.IsSame(target):
            transform = osr.CoordinateTransformation(source, target)
    raster_box = ogr.CreateGeometryFromWkt(
        "POLYGON(({0} {1},{2} {1},{2} {3},{0} {3},{0} {1}))".format(*raster_bounds))

    geoms, values, splits = [], [], []
    empty = not_polygon = outside = 0
    for feat in layer:
        value = feat.GetField(class_field)
        if value is None or (isinstance(value, str) and not value.strip()):
            empty += 1
            continue
        geom = feat.GetGeometryRef()
        if geom is None or ogr.GT_Flatten(geom.GetGeometryType()) not in (ogr.wkbPolygon, ogr.wkbMultiPolygon):
            not_polygon += 1
            continue
        geom = geom.Clone()
        geom.FlattenTo2D()
        if transform is not None:
            try:
                geom.Transform(transform)
            except RuntimeError:  # outside the domain of the raster's projection
                outside += 1
                continue
        if not geom.IsValid():
            geom = geom.Buffer(0)
        if not geom.Intersects(raster_box):
            outside += 1
            continue
        geoms.append(geom)
        values.append(int(value) if is_int else str(value).strip())
        if split_field:
            splits.append(str(feat.GetField(split_field) or ""))
    ds = None
    if empty:
        warnings.append(f"{empty} polygon(s) with an empty {class_field!r} were left out.")
    if not_polygon:
        warnings.append(f"{not_polygon} feature(s) that are not polygons were left out.")
    if outside:
        warnings.append(f"{outside} polygon(s) outside the raster were left out.")
    if not geoms:
        if outside:
            raise InputError("None of the labelled polygons lies over the raster.",
                             hint="Check that the polygons and the raster cover the same place (and their CRS).")
        raise InputError(f"No polygon has a value in the class field {class_field!r}.",
                         hint="Fill the class field of the polygons you drew, or choose another field.")
    names = _sorted_classes(values)
    refuse_measurement_field(class_field, field_type == ogr.OFTReal, len(names), len(values))
    if len(names) < 2:
        raise InputError(f"Only one class ({names[0]!r}) in {class_field!r}: a classifier needs at least two.",
                         hint="Draw polygons of the other land covers too (e.g. what is NOT this class).")
    index = {n: i for i, n in enumerate(names)}
    for w in warnings:
        progress.warn(w)
    return LabelSet(geometries=[g.ExportToWkb() for g in geoms],
                    class_ids=np.array([index[str(v)] for v in values], dtype=np.int64),
                    classes=class_colors(names, colors),
                    areas=np.array([g.GetArea() for g in geoms]),
                    centroids=np.array([g.Centroid().GetPoint_2D() for g in geoms]),
                    source_crs=source.GetName() if source is not None else "", warnings=warnings,
                    split_values=splits if split_field else None)


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
