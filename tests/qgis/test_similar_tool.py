"""The "Find similar" map tool on a real map canvas with the real backend: clicks and shift-clicks, the cached
embeddings, the similarity layer replaced in place, clearing the cache, and bad clicks told in words."""

from __future__ import annotations

import time

import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsPointXY, QgsProject, QgsRasterLayer, QgsSingleBandPseudoColorRenderer
from qgis.gui import QgsMapCanvas, QgsMessageBar
from qgis.PyQt.QtCore import QPoint, Qt
from qgis.PyQt.QtTest import QTest

from .geodata import require_task, s2_crop


def wait(tool, timeout: float = 240.0) -> None:
    end = time.monotonic() + timeout
    while (tool.task is not None or tool.pending) and time.monotonic() < end:
        QgsApplication.processEvents()
        time.sleep(0.05)
    assert tool.task is None, "the query did not finish"


@pytest.fixture()
def canvas_with_raster(qgis_app, data_dir, tmp_path):
    require_task("similar")
    project = QgsProject.instance()
    project.clear()
    project.setPresetHomePath(str(tmp_path / "project"))
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    ds = gdal.Open(str(raster), gdal.GA_Update)  # a nodata corner
    for b in range(1, ds.RasterCount + 1):
        ds.GetRasterBand(b).SetNoDataValue(0)
        ds.GetRasterBand(b).WriteArray(gdal.Open(str(raster)).ReadAsArray(0, 0, 20, 20)[0] * 0, 0, 0)
    ds = None
    layer = QgsRasterLayer(str(raster), "s2")
    project.addMapLayer(layer)
    canvas = QgsMapCanvas()
    canvas.resize(400, 400)
    canvas.setDestinationCrs(layer.crs())
    canvas.setLayers([layer])
    canvas.setExtent(layer.extent())
    canvas.refresh()
    yield canvas, layer, raster
    if canvas.mapTool() is not None:
        canvas.unsetMapTool(canvas.mapTool())  # deactivates it: its markers leave the canvas before the canvas goes
    project.clear()
    project.setPresetHomePath("")


def at(raster, col: float, row: float) -> QgsPointXY:
    gt = gdal.Open(str(raster)).GetGeoTransform()
    return QgsPointXY(gt[0] + col * gt[1], gt[3] + row * gt[5])


def similarity_layers():
    return [lyr for lyr in QgsProject.instance().mapLayers().values() if lyr.name() == "GeoLink similarity"]


def test_clicks_encode_once_then_update_the_similarity_layer(canvas_with_raster, tiny_models, tmp_path):
    from geolink_qgis.ui.similar_tool import FindSimilarTool, cache_folder, cache_size, clear_cache

    canvas, layer, raster = canvas_with_raster
    tool = FindSimilarTool(canvas, QgsMessageBar(), model=tiny_models["encoder"])
    canvas.setMapTool(tool)
    tool.click(at(raster, 40, 40))
    wait(tool)
    assert tool.last_error == ""
    folder = cache_folder()
    assert folder == tmp_path / "project" / "geolink_cache"
    embeddings = [p for p in folder.glob("*.tif") if "similarity" not in p.name and "pca" not in p.name]
    assert len(embeddings) == 1
    stamp = embeddings[0].stat().st_mtime_ns
    (first,) = similarity_layers()
    assert isinstance(first.renderer(), QgsSingleBandPseudoColorRenderer)
    first_path = first.source()

    # a shift-click with the mouse on the canvas adds a point (not a zoom): same embeddings, a new map in
    # the old one's place
    pixel = canvas.getCoordinateTransform().transform(at(raster, 50, 30))
    pos = QPoint(int(pixel.x()), int(pixel.y()))
    QTest.mousePress(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, pos, 800)
    QTest.mouseRelease(canvas.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ShiftModifier, pos, 100)
    wait(tool)
    assert len(tool.points) == 2 and tool.last_error == ""
    (second,) = similarity_layers()
    assert second.source() != first_path and not gdal.VSIStatL(first_path)
    assert embeddings[0].stat().st_mtime_ns == stamp  # not encoded again
    a = gdal.Open(second.source()).ReadAsArray()
    assert a.shape == (64, 64) and a[40:, 40:].max() <= 1.0

    assert cache_size(folder) > 0
    assert clear_cache(folder) > 0 and not similarity_layers() and not list(folder.glob("*.tif"))


def test_bad_clicks_are_told_in_words(canvas_with_raster, tiny_models):
    from geolink_qgis.ui.similar_tool import FindSimilarTool

    canvas, layer, raster = canvas_with_raster
    bar = QgsMessageBar()
    tool = FindSimilarTool(canvas, bar, active_layer=lambda: layer, model=tiny_models["encoder"])
    canvas.setMapTool(tool)
    tool.click(at(raster, 500, 10))
    wait(tool)
    assert "outside the raster" in tool.last_error
    tool.click(at(raster, 5, 5))
    wait(tool)
    assert "on nodata" in tool.last_error
    assert not similarity_layers()
    nothing = FindSimilarTool(canvas, bar, model=tiny_models["encoder"])
    canvas.setLayers([])
    nothing.click(at(raster, 40, 40))
    assert nothing.task is None and not nothing.points
