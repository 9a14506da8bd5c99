"""QGIS layers -> files the backend can read.

File-based layers are passed as their path; anything else (web layers such as WMS
or XYZ, virtual rasters, memory or database vector layers, filtered layers, one
table of a multi-layer file) is written to a temporary GeoTIFF or GeoPackage first.
"""

from __future__ import annotations

import math
import uuid
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingUtils,
    QgsProject,
    QgsProviderRegistry,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
    QgsUnitTypes,
    QgsVectorFileWriter,
    QgsVectorLayer,
)

from .compat import DISTANCE_METERS, RASTER_WRITE_OK, VECTOR_WRITE_OK

OSM_SUFFIXES = (".osm", ".pbf")
MAX_EXPORT_PIXELS = 400_000_000  # 20,000 x 20,000
DEFAULT_WEB_GSD_M = 1.0


def temp_path(stem: str, suffix: str) -> Path:
    """A fresh path in Processing's temporary folder (cleaned by QGIS on exit)."""
    folder = Path(QgsProcessingUtils.tempFolder())
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{stem}_{uuid.uuid4().hex[:8]}{suffix}"


def layer_file(layer) -> Tuple[Optional[str], Optional[str]]:
    """(path, layer name inside the file) of a GDAL/OGR layer backed by a local file, else (None, None)."""
    if layer is None or layer.providerType() not in ("gdal", "ogr"):
        return None, None
    parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source())
    path = parts.get("path")
    if not path or not Path(str(path)).is_file():
        return None, None
    name = parts.get("layerName")
    extras = {k for k, v in parts.items() if v and k not in ("path", "layerName", "layerId")}
    if extras:  # open options, sublayer ids, ...: the backend would not see them
        return None, None
    return str(path), (str(name) if name else None)


def is_plain_file(layer) -> bool:
    """A single-layer local file the backend can open by its path alone."""
    path, sublayer = layer_file(layer)
    return bool(path) and not sublayer


# ---------------------------------------------------------------- rasters

def raster_path(layer: QgsRasterLayer, extent: Optional[QgsRectangle] = None, gsd_m: Optional[float] = None,
                feedback: Optional[QgsProcessingFeedback] = None) -> str:
    """The raster as a file: a local GDAL file as is, anything else exported to a temporary GeoTIFF.

    `extent` (in the layer's CRS) limits the processing to an area: a file is then cut to it at its own
    resolution. Web layers (WMS, XYZ) need an extent, and are downloaded at `gsd_m` metres per pixel
    (1 m when not given); files keep their resolution (the backend resamples to the GSD it is given).
    """
    if layer is None or not layer.isValid():
        raise QgsProcessingException("The input raster layer is not valid (is the file or service reachable?).")
    path, sublayer = layer_file(layer)
    has_extent = extent is not None and not extent.isNull() and not extent.isEmpty()
    if path and not sublayer and not has_extent:
        return path
    pixel_size = None
    if _is_web(layer) and gsd_m:
        pixel_size = gsd_m * QgsUnitTypes.fromUnitToUnitFactor(DISTANCE_METERS, layer.crs().mapUnits())
    return export_raster(layer, extent if has_extent else None, pixel_size, feedback)


def _is_web(layer: QgsRasterLayer) -> bool:
    return layer.providerType() in ("wms", "wcs", "arcgismapserver") or not layer.dataProvider().xSize()


def export_resolution(layer: QgsRasterLayer, pixel_size: Optional[float]) -> float:
    """Pixel size in layer units: the given one, the layer's native one, or 1 m for web layers."""
    if pixel_size and pixel_size > 0:
        return float(pixel_size)
    if not _is_web(layer) and layer.rasterUnitsPerPixelX() > 0:
        return layer.rasterUnitsPerPixelX()
    factor = QgsUnitTypes.fromUnitToUnitFactor(DISTANCE_METERS, layer.crs().mapUnits())
    return DEFAULT_WEB_GSD_M * factor


def export_raster(layer: QgsRasterLayer, extent: Optional[QgsRectangle] = None, pixel_size: Optional[float] = None,
                  feedback: Optional[QgsProcessingFeedback] = None) -> str:
    """Render the layer's data (a web map's image, a virtual raster's values) into a temporary GeoTIFF."""
    if extent is None or extent.isNull() or extent.isEmpty():
        if _is_web(layer):
            raise QgsProcessingException(
                f"'{layer.name()}' is a web layer: set a processing extent (and a ground sample distance) "
                "so GeoLink knows which area to download and at which resolution.")
        extent = layer.extent()
    extent = extent.intersect(layer.extent()) if not _is_web(layer) else extent
    res = export_resolution(layer, pixel_size)
    cols, rows = max(1, math.ceil(extent.width() / res)), max(1, math.ceil(extent.height() / res))
    if cols * rows > MAX_EXPORT_PIXELS:
        raise QgsProcessingException(
            f"Exporting '{layer.name()}' at {res:g} units per pixel gives {cols} x {rows} pixels, too many. "
            "Use a smaller extent or a larger ground sample distance.")
    extent = QgsRectangle(extent.xMinimum(), extent.yMaximum() - rows * res,
                          extent.xMinimum() + cols * res, extent.yMaximum())
    target = temp_path(_safe_stem(layer.name()), ".tif")
    if feedback:
        feedback.pushInfo(f"Exporting '{layer.name()}' to {target} ({cols} x {rows} px, {res:g} units/px)")
    provider = layer.dataProvider().clone()
    pipe = QgsRasterPipe()
    if not pipe.set(provider):
        raise QgsProcessingException(f"Cannot read '{layer.name()}' for export.")
    writer = QgsRasterFileWriter(str(target))
    writer.setOutputFormat("GTiff")
    # setCreationOptions from QGIS 3.44, where setCreateOptions is deprecated
    (getattr(writer, "setCreationOptions", None) or writer.setCreateOptions)(["COMPRESS=DEFLATE", "TILED=YES"])
    error = writer.writeRaster(pipe, cols, rows, extent, layer.crs(), QgsProject.instance().transformContext(),
                               feedback)
    if error != RASTER_WRITE_OK or not target.exists():
        raise QgsProcessingException(f"Exporting '{layer.name()}' to a GeoTIFF failed (error {error}).")
    if _is_web(layer):
        return _drop_alpha(target)
    return str(target)


def _drop_alpha(path: Path) -> str:
    """Web maps come as RGBA images: keep RGB for the model, with transparent pixels as nodata 0."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    if ds is None or ds.RasterCount != 4:
        return str(path)
    ds = None
    rgb = path.with_name(path.stem + "_rgb.tif")
    gdal.Translate(str(rgb), str(path), bandList=[1, 2, 3], noData=0, creationOptions=["COMPRESS=DEFLATE", "TILED=YES"])
    path.unlink()
    return str(rgb)


# ---------------------------------------------------------------- vectors

def vector_path(layer: QgsVectorLayer, feedback: Optional[QgsProcessingFeedback] = None) -> str:
    """The layer as a file the backend reads whole: its own file when it is one, else a temporary GeoPackage."""
    if layer is None or not layer.isValid():
        raise QgsProcessingException("A vector layer is not valid.")
    path, sublayer = layer_file(layer)
    if path and not layer.subsetString():
        if path.lower().endswith(OSM_SUFFIXES):
            return path  # the backend reads every OSM layer (points, lines, multipolygons) itself
        if not sublayer or _layer_count(path) == 1:
            return path
    return export_vector(layer, feedback)


def _layer_count(path: str) -> int:
    meta = QgsProviderRegistry.instance().providerMetadata("ogr")
    return len(meta.querySublayers(path)) if hasattr(meta, "querySublayers") else 0


def export_vector(layer: QgsVectorLayer, feedback: Optional[QgsProcessingFeedback] = None) -> str:
    """Write the layer (its filter applied) to a temporary GeoPackage; the backend reprojects it."""
    target = temp_path(_safe_stem(layer.name()), ".gpkg")
    if feedback:
        feedback.pushInfo(f"Writing '{layer.name()}' ({layer.featureCount()} features) to {target}")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    options.layerName = _safe_stem(layer.name())
    write = getattr(QgsVectorFileWriter, "writeAsVectorFormatV3", None) or QgsVectorFileWriter.writeAsVectorFormatV2
    result = write(layer, str(target), QgsProject.instance().transformContext(), options)
    if result[0] != VECTOR_WRITE_OK:
        raise QgsProcessingException(f"Writing '{layer.name()}' to a GeoPackage failed: {result[1]}")
    return str(target)


def osm_paths(layers: Iterable[QgsVectorLayer], files: Iterable[str] = (),
              feedback: Optional[QgsProcessingFeedback] = None) -> List[str]:
    """OSM sources for the backend: each layer as a file, plus .osm/.pbf/vector files given by path; no duplicates."""
    paths: List[str] = []
    for layer in layers or []:
        paths.append(vector_path(layer, feedback))
    for f in files or []:
        if f and str(f).strip():
            if not Path(f).is_file():
                raise QgsProcessingException(f"OSM file not found: {f}")
            paths.append(str(f))
    unique: List[str] = []
    for p in paths:
        if p not in unique:
            unique.append(p)
    return unique


OSM_FIELDS = {"osm_id", "osm_way_id", "osm_type", "other_tags", "highway", "building", "landuse", "natural",
              "amenity", "waterway", "railway", "leisure", "shop", "man_made", "boundary"}


def is_osm_like(layer: QgsVectorLayer) -> bool:
    """Whether a vector layer looks like OpenStreetMap data: read from .osm/.pbf, or with OSM ids or tag fields
    (QuickOSM, an OSM GeoPackage or GeoJSON export)."""
    if layer is None:
        return False
    if layer.providerType() == "osm" or layer.source().split("|")[0].lower().endswith(OSM_SUFFIXES):
        return True
    return bool({f.name().lower() for f in layer.fields()} & OSM_FIELDS)


def category_colours(layer: QgsVectorLayer, field: str) -> Dict[str, str]:
    """Class value -> '#rrggbb' from the layer's categorized style, when it is categorized on `field`."""
    renderer = layer.renderer() if layer is not None else None
    if not isinstance(renderer, QgsCategorizedSymbolRenderer) or renderer.classAttribute() != field:
        return {}
    colours = {}
    for cat in renderer.categories():
        value = cat.value()
        if value is None or cat.symbol() is None or str(value) in ("", "NULL"):
            continue
        colours[str(value)] = cat.symbol().color().name()
    return colours


def _safe_stem(name: str) -> str:
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in name).strip("_")
    return stem[:40] or "layer"
