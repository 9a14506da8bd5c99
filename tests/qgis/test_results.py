"""Outputs on the map: the styler applied to real files as Processing hands them over (real QGIS project)."""

from __future__ import annotations

from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorFileWriter,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from geolink_qgis import results

from .geodata import classified_tif

NAMES = ["water", "forest", "built-up"]
COLOURS = [(31, 120, 180), (51, 160, 44), (227, 26, 28)]
COLOURS_Q = [QColor(*c) for c in COLOURS]


def _context(project: QgsProject) -> QgsProcessingContext:
    context = QgsProcessingContext()
    context.setProject(project)
    return context


def test_classification_becomes_a_named_palette_in_the_run_group(qgis_app, tmp_path):
    project = QgsProject()
    tif = classified_tif(tmp_path / "classes.tif", NAMES, COLOURS)
    layer = QgsRasterLayer(str(tif), "classes")
    project.addMapLayer(layer)
    styler = results.ResultStyler(results.CLASSES, "GeoLink classify: crop", "Land cover",
                                  {"task": "classify", "model": "tiny", "device": "cpu"})
    styler.postProcessLayer(layer, _context(project), QgsProcessingFeedback())

    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.label, c.color.name()) for c in renderer.classes()] == [
        (0, "water", "#1f78b4"), (1, "forest", "#33a02c"), (2, "built-up", "#e31a1c")]
    legend = [text for text, _ in renderer.legendSymbologyItems()]
    assert legend == NAMES
    group = project.layerTreeRoot().findGroup("GeoLink classify: crop")
    assert group is not None and [n.layerId() for n in group.findLayers()] == [layer.id()]
    assert project.layerTreeRoot().findLayer(layer.id()).parent() is group
    assert layer.name() == "Land cover"
    assert "model: tiny" in layer.metadata().abstract() and layer.metadata().history()


def test_backend_qml_beside_the_output_wins(qgis_app, tmp_path):
    project = QgsProject()
    tif = classified_tif(tmp_path / "classes.tif", NAMES, COLOURS)
    styled = QgsRasterLayer(str(tif), "styled")
    styled.setRenderer(QgsPalettedRasterRenderer(styled.dataProvider(), 1, [
        QgsPalettedRasterRenderer.Class(0, COLOURS_Q[0], "open water"),
        QgsPalettedRasterRenderer.Class(1, COLOURS_Q[1], "woodland")]))
    styled.saveNamedStyle(str(tmp_path / "classes.qml"))
    layer = QgsRasterLayer(str(tif), "classes")
    project.addMapLayer(layer)
    results.ResultStyler(results.CLASSES, "run", "Land cover", {}).postProcessLayer(
        layer, _context(project), QgsProcessingFeedback())
    assert [c.label for c in layer.renderer().classes()] == ["open water", "woodland"]


def _zones_gpkg(path) -> str:
    mem = QgsVectorLayer("Polygon?crs=EPSG:32618&field=class_name:string&field=confidence:double", "z", "memory")
    feats = []
    for i, (name, conf) in enumerate([("residential", 0.8), ("commercial", 0.6), ("residential", 0.9)]):
        f = QgsFeature(mem.fields())
        f.setAttributes([name, conf])
        x = 500_000 + 100 * i
        f.setGeometry(QgsGeometry.fromWkt(f"POLYGON (({x} 0, {x + 90} 0, {x + 90} 90, {x} 90, {x} 0))"))
        feats.append(f)
    mem.dataProvider().addFeatures(feats)
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    QgsVectorFileWriter.writeAsVectorFormatV3(mem, str(path), QgsProject.instance().transformContext(), opts)
    return str(path)


def test_zones_are_categorized_by_class_above_the_rasters(qgis_app, tmp_path):
    project = QgsProject()
    tif = classified_tif(tmp_path / "classes.tif", NAMES, COLOURS)
    raster = QgsRasterLayer(str(tif), "classes")
    zones = QgsVectorLayer(_zones_gpkg(tmp_path / "zones.gpkg"), "zones", "ogr")
    project.addMapLayers([raster, zones])
    context = _context(project)
    for layer, kind in ((raster, results.CLASSES), (zones, results.ZONES)):
        results.ResultStyler(kind, "GeoLink zones: crop", kind, {"task": "zones"}).postProcessLayer(
            layer, context, QgsProcessingFeedback())
    renderer = zones.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class_name"
    assert sorted(c.label() for c in renderer.categories()) == ["commercial", "residential"]
    assert "confidence" in zones.fields().names()
    group = project.layerTreeRoot().findGroup("GeoLink zones: crop")
    assert [n.layerId() for n in group.findLayers()] == [zones.id(), raster.id()]


def test_attach_queues_extra_outputs_only_when_results_are_loaded(qgis_app, tmp_path):
    project = QgsProject()
    tif = str(classified_tif(tmp_path / "preview.tif", NAMES, COLOURS))
    context = _context(project)
    styler = results.ResultStyler(results.PREVIEW, "run", "Preview", {})
    assert not results.attach(context, tif, styler, load_if_missing=False)
    assert results.attach(context, tif, styler, load_if_missing=True)
    assert context.willLoadLayerOnCompletion(tif)
    assert context.layerToLoadOnCompletionDetails(tif).postProcessor() is styler
