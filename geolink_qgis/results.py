"""Backend outputs -> styled map layers, grouped per run, with their provenance in the layer metadata.

Processing loads declared outputs itself when an algorithm runs from the toolbox, the
Model Builder or `processing.runAndLoadResults`; a `ResultStyler` attached to each of
them then applies the style and moves the layer into the run's group. Outputs the
backend adds on its own (a PCA preview, say) are queued for loading the same way.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsLayerMetadata,
    QgsLayerTreeGroup,
    QgsMapLayer,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

CLASSES, PROBABILITIES, ZONES, EMBEDDINGS, PREVIEW = "classes", "probabilities", "zones", "embeddings", "preview"
SIMILARITY = "similarity"  # styled by the colour-ramp QML the backend writes beside it
OUTPUT_PROPERTY = "geolink/output"  # a layer's custom property: the kind of GeoLink output it is (saved in projects)
CLASS_FIELDS = ("class_name", "class", "label", "zone", "category")
COLOUR_FIELDS = ("color", "colour", "class_color", "class_colour")
_ALIVE: List[ResultStyler] = []  # Processing does not own Python post-processors; keep them alive


def palette(n: int) -> List[QColor]:
    """n distinct colours (golden-angle hues), for classes without colours of their own."""
    return [QColor.fromRgbF(*colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.55, 0.9)) for i in range(n)]


# ---------------------------------------------------------------- styles

def sidecar_style(layer: QgsMapLayer) -> Optional[Path]:
    """The QML the backend wrote beside the output (OUT.qml next to OUT.tif), if any."""
    source = Path(layer.source().split("|")[0])
    qml = source.with_suffix(".qml")
    return qml if qml.is_file() else None


def raster_classes(path: str) -> List[QgsPalettedRasterRenderer.Class]:
    """Classes of a classified GeoTIFF: its colour table, named by the band's category names when present."""
    try:
        from osgeo import gdal
    except ImportError:
        return []
    ds = gdal.Open(path)
    if ds is None:
        return []
    ds.GetMetadata()  # GDAL 3.6's GeoTIFF driver reads the .aux.xml (category names) only after another call
    band = ds.GetRasterBand(1)
    table, names = band.GetColorTable(), band.GetCategoryNames() or []
    nodata = band.GetNoDataValue()
    if names:  # GeoTIFF pads colour tables to 256 entries; the names say how many classes there are
        count = len(names)
    elif table is not None:
        count = min(table.GetCount(), int(band.ComputeRasterMinMax(True)[1]) + 1)
    else:
        return []
    colours = palette(count)
    classes = []
    for value in range(count):
        name = names[value] if value < len(names) else ""
        if (nodata is not None and value == int(nodata)) or (names and not name):
            continue
        colour = QColor(*table.GetColorEntry(value)[:3]) if table is not None else colours[value]
        classes.append(QgsPalettedRasterRenderer.Class(value, colour, name or str(value)))
    return classes


def style_classes(layer: QgsRasterLayer) -> None:
    classes = raster_classes(layer.source())
    if classes:
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))


def class_field(layer: QgsVectorLayer) -> Optional[str]:
    names = [f.name() for f in layer.fields()]
    for candidate in CLASS_FIELDS:
        if candidate in names:
            return candidate
    return None


def style_zones(layer: QgsVectorLayer) -> None:
    if isinstance(layer.renderer(), QgsCategorizedSymbolRenderer):
        return
    field = class_field(layer)
    if field is None:
        return
    colour_field = next((f for f in COLOUR_FIELDS if f in [x.name() for x in layer.fields()]), None)
    values, colours = [], {}
    for feature in layer.getFeatures():
        value = feature[field]
        if value not in values:
            values.append(value)
            if colour_field and QColor(str(feature[colour_field])).isValid():
                colours[value] = QColor(str(feature[colour_field]))
    fallback = palette(len(values))
    categories = []
    for i, value in enumerate(sorted(values, key=str)):
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(colours.get(value, fallback[i]))
        categories.append(QgsRendererCategory(value, symbol, str(value)))
    layer.setRenderer(QgsCategorizedSymbolRenderer(field, categories))


def style_preview(layer: QgsRasterLayer) -> None:
    if layer.bandCount() >= 3 and not isinstance(layer.renderer(), QgsMultiBandColorRenderer):
        layer.setRenderer(QgsMultiBandColorRenderer(layer.dataProvider(), 1, 2, 3))


def apply_style(layer: QgsMapLayer, kind: str) -> None:
    """The QML the backend wrote beside the output when there is one, else a style made here from the file."""
    qml = sidecar_style(layer)
    if qml is not None and layer.loadNamedStyle(str(qml))[1]:
        layer.triggerRepaint()
        return
    if kind == CLASSES and isinstance(layer, QgsRasterLayer):
        style_classes(layer)
    elif kind == ZONES and isinstance(layer, QgsVectorLayer):
        style_zones(layer)
    elif kind == PREVIEW and isinstance(layer, QgsRasterLayer):
        style_preview(layer)
    layer.triggerRepaint()


# ---------------------------------------------------------------- provenance

def file_provenance(path: str) -> Dict[str, str]:
    """The GEOLINK_* metadata items the backend wrote into the output file (model hash, inputs, OSM dates...)."""
    try:
        from osgeo import gdal
    except ImportError:
        return {}
    source = path.split("|")[0]
    if not Path(source).exists():  # a memory or database layer: no file metadata
        return {}
    ds = gdal.OpenEx(source)
    if ds is None:
        return {}
    items = dict(ds.GetMetadata() or {})
    for i in range(ds.GetLayerCount()):
        items.update(ds.GetLayer(i).GetMetadata() or {})
    return {k[len("GEOLINK_"):].lower(): v for k, v in items.items() if k.startswith("GEOLINK_")}


def set_provenance(layer: QgsMapLayer, title: str, provenance: Dict[str, object]) -> None:
    """Record how the layer was made in its metadata (Layer Properties > Metadata)."""
    provenance = {**provenance, **file_provenance(layer.source())}
    md = QgsLayerMetadata(layer.metadata())
    md.setTitle(title)
    lines = [f"{k}: {v}" for k, v in provenance.items() if v not in (None, "", [], {})]
    md.setAbstract("Made with GeoLink for QGIS.\n" + "\n".join(lines))
    md.setHistory(list(md.history()) + ["GeoLink: " + "; ".join(lines)])
    md.addKeywords("GeoLink", ["GeoLink", str(provenance.get("task", ""))])
    layer.setMetadata(md)


# ---------------------------------------------------------------- naming and grouping

def model_label(model: object) -> str:
    """A model as the user named it: 'default', or a package path's file name without its extension."""
    text = str(model or "default")
    return Path(text).stem if text.lower().endswith((".safetensors", ".pth", ".pt")) else text


def shorten(text: str, width: int = 18) -> str:
    """`text` in at most `width` characters, its middle elided: file names differ at either end."""
    return text if len(text) <= width else text[:width - 7] + "…" + text[-6:]


def run_names(task_title: str, output_title: str, raster: str, model: object, when: str) -> Tuple[str, str]:
    """(group, layer) names for one run's output. The Layers panel cuts long names on the right (a docked panel
    shows some 28 characters of a layer in a group), so names start with what tells runs apart: the group
    with the time, then the task ("09:24:15 Classify land cover"); the layer with the raster (its middle
    elided) and the model, then what it is ("Sentinel-2 north · default · Land cover")."""
    group = f"{when} {task_title}"
    parts = [shorten(raster), model_label(model)] if raster else []
    return group, " · ".join([*parts, output_title])


def is_geolink_output(layer: QgsMapLayer) -> bool:
    """Whether GeoLink made this layer (a map, zones, embeddings), so it is not offered as an input again."""
    return bool(layer is not None and layer.customProperty(OUTPUT_PROPERTY))


def group_for(project: QgsProject, name: str) -> QgsLayerTreeGroup:
    root = project.layerTreeRoot()
    group = root.findGroup(name)
    return group if group is not None else root.insertGroup(0, name)


def move_to_group(layer: QgsMapLayer, project: QgsProject, group_name: str, visible: bool = True) -> None:
    """Put the layer's tree node into the run's group; vectors above rasters so zones stay visible."""
    root = project.layerTreeRoot()
    group = group_for(project, group_name)
    node = root.findLayer(layer.id())
    if node is None:
        if project.mapLayer(layer.id()) is None:
            project.addMapLayer(layer, False)
        new = group.insertLayer(0 if isinstance(layer, QgsVectorLayer) else len(group.children()), layer)
    elif node.parent() is group:
        new = node
    else:
        new = node.clone()
        group.insertChildNode(0 if isinstance(layer, QgsVectorLayer) else len(group.children()), new)
        node.parent().removeChildNode(node)
    new.setItemVisibilityChecked(visible)


class ResultStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles one output layer once Processing has added it to the project."""

    def __init__(self, kind: str, group_name: str, title: str, provenance: Dict[str, object], visible: bool = True):
        super().__init__()
        self.kind, self.group_name, self.title, self.provenance, self.visible = (
            kind, group_name, title, provenance, visible)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        project = (context.project() if context is not None else None) or QgsProject.instance()
        layer.setName(self.title)
        layer.setCustomProperty(OUTPUT_PROPERTY, self.kind)
        apply_style(layer, self.kind)
        set_provenance(layer, self.title, self.provenance)
        move_to_group(layer, project, self.group_name, self.visible)


def attach(context: QgsProcessingContext, path: str, styler: ResultStyler, load_if_missing: bool) -> bool:
    """Style `path` when Processing loads it; queue it for loading when `load_if_missing` (an extra output)."""
    if not path:
        return False
    if not context.willLoadLayerOnCompletion(path):
        if not load_if_missing:
            return False
        details = QgsProcessingContext.LayerDetails(styler.title, context.project() or QgsProject.instance(),
                                                    styler.kind)
        context.addLayerToLoadOnCompletion(path, details)
    context.layerToLoadOnCompletionDetails(path).setPostProcessor(styler)
    _ALIVE.append(styler)
    del _ALIVE[:-200]
    return True
