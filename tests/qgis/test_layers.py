"""Inputs: layers of every kind become files the backend can read (real QGIS providers, real files)."""

from __future__ import annotations

import math
import shutil
import subprocess

import pytest
from osgeo import gdal
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsProcessingException,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from geolink_qgis import layers

from .geodata import helsinki_pbf, s2_crop


def test_file_raster_is_passed_as_is(qgis_app, data_dir, tmp_path):
    tif = s2_crop(data_dir, tmp_path / "crop.tif")
    layer = QgsRasterLayer(str(tif), "crop")
    assert layers.raster_path(layer) == str(tif)


def test_file_raster_with_a_processing_extent_is_cut_at_native_resolution(qgis_app, data_dir, tmp_path):
    tif = s2_crop(data_dir, tmp_path / "crop.tif", size=64)
    layer = QgsRasterLayer(str(tif), "crop")
    ext = layer.extent()
    quarter = QgsRectangle(ext.xMinimum(), ext.center().y(), ext.center().x(), ext.yMaximum())
    ds = gdal.Open(layers.raster_path(layer, quarter, gsd_m=30.0))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (32, 32, 4)
    assert ds.GetGeoTransform()[0] == pytest.approx(ext.xMinimum()) and ds.GetGeoTransform()[1] == 10.0
    src = gdal.Open(str(tif))
    assert (ds.GetRasterBand(2).ReadAsArray() == src.GetRasterBand(2).ReadAsArray(0, 0, 32, 32)).all()


def test_virtual_raster_is_exported_at_its_extent_and_resolution(qgis_app, data_dir, tmp_path):
    tif = s2_crop(data_dir, tmp_path / "crop.tif", size=64)
    src = QgsRasterLayer(str(tif), "crop")
    ext = src.extent()
    uri = (f"?crs=EPSG:32618&extent={ext.xMinimum()},{ext.yMinimum()},{ext.xMaximum()},{ext.yMaximum()}"
           f"&width=64&height=64&formula=%22crop%401%22%20*%202&crop:uri={tif}&crop:provider=gdal")
    virtual = QgsRasterLayer(uri, "doubled", "virtualraster")
    assert virtual.isValid(), virtual.error().message()
    out = layers.raster_path(virtual)
    assert out != str(tif) and out.endswith(".tif")
    ds = gdal.Open(out)
    assert (ds.RasterXSize, ds.RasterYSize) == (64, 64)
    assert ds.GetGeoTransform()[1] == pytest.approx(10.0)
    src_ds = gdal.Open(str(tif))  # keep the dataset alive while reading its band
    original = src_ds.GetRasterBand(1).ReadAsArray().astype(float)
    assert ds.GetRasterBand(1).ReadAsArray() == pytest.approx(original * 2)


def test_export_honours_extent_and_pixel_size(qgis_app, data_dir, tmp_path):
    tif = s2_crop(data_dir, tmp_path / "crop.tif", size=64)
    layer = QgsRasterLayer(str(tif), "crop")
    ext = layer.extent()
    half = QgsRectangle(ext.xMinimum(), ext.yMinimum(), ext.center().x(), ext.center().y())
    ds = gdal.Open(layers.export_raster(layer, half, 20.0))
    assert (ds.RasterXSize, ds.RasterYSize) == (16, 16) and ds.RasterCount == 4


@pytest.mark.skipif(not shutil.which("gdal2tiles.py"), reason="gdal2tiles.py (gdal-bin) not installed")
def test_xyz_web_layer_is_downloaded_at_the_extent_and_resolution(qgis_app, data_dir, tmp_path):
    """A real XYZ tile layer (served from file:// tiles cut from the S2 crop) exported as an RGB GeoTIFF."""
    rgb = tmp_path / "rgb.tif"
    gdal.Translate(str(rgb), str(s2_crop(data_dir, tmp_path / "crop.tif")), bandList=[3, 2, 1],
                   outputType=gdal.GDT_Byte, scaleParams=[[0, 3000, 1, 255]])
    subprocess.run(["gdal2tiles.py", "-q", "--xyz", "-z", "13-14", "-w", "none", str(rgb), str(tmp_path / "t")],
                   check=True)
    xyz = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/t/{{z}}/{{x}}/{{y}}.png&zmax=14&zmin=13", "xyz", "wms")
    assert xyz.isValid()
    src = QgsRasterLayer(str(rgb), "rgb")
    extent = QgsCoordinateTransform(src.crs(), xyz.crs(), QgsProject.instance()).transformBoundingBox(src.extent())
    ds = gdal.Open(layers.raster_path(xyz, extent, 20.0))
    assert ds.RasterCount == 3 and ds.RasterXSize == math.ceil(extent.width() / 20.0)
    assert ds.GetRasterBand(1).GetNoDataValue() == 0
    assert ds.GetRasterBand(2).ComputeRasterMinMax()[1] > 50  # real image content came through


def test_web_layer_without_extent_is_refused_in_words(qgis_app, tmp_path):
    xyz = QgsRasterLayer(f"type=xyz&url=file://{tmp_path}/{{z}}/{{x}}/{{y}}.png&zmax=19&zmin=0", "tiles", "wms")
    assert xyz.isValid()
    with pytest.raises(QgsProcessingException, match="web layer: set a processing extent"):
        layers.raster_path(xyz)


def test_osm_pbf_layer_passes_the_file_once(qgis_app, data_dir):
    pbf = helsinki_pbf(data_dir)
    points = QgsVectorLayer(f"{pbf}|layername=points", "points", "ogr")
    lines = QgsVectorLayer(f"{pbf}|layername=lines", "lines", "ogr")
    assert points.isValid() and lines.isValid()
    assert layers.osm_paths([points, lines], [str(pbf)]) == [str(pbf)]


def test_memory_and_filtered_layers_are_written_to_gpkg(qgis_app, data_dir):
    mem = QgsVectorLayer("Point?crs=EPSG:4326&field=highway:string", "memory osm", "memory")
    f = QgsFeature(mem.fields())
    f.setAttribute("highway", "bus_stop")
    f.setGeometry(QgsGeometry.fromWkt("POINT (24.94 60.17)"))
    mem.dataProvider().addFeatures([f])
    filtered = QgsVectorLayer(f"{helsinki_pbf(data_dir)}|layername=points", "shops", "ogr")
    assert filtered.setSubsetString("\"highway\" IS NOT NULL")
    paths = layers.osm_paths([mem, filtered])
    assert len(paths) == 2 and all(p.endswith(".gpkg") for p in paths)
    written = QgsVectorLayer(paths[0], "w", "ogr")
    assert written.featureCount() == 1 and next(written.getFeatures())["highway"] == "bus_stop"
    shops = QgsVectorLayer(paths[1], "s", "ogr")
    every_point = QgsVectorLayer(f"{helsinki_pbf(data_dir)}|layername=points", "p", "ogr")
    assert 0 < shops.featureCount() < sum(1 for _ in every_point.getFeatures())


def test_one_layer_of_a_multi_layer_gpkg_is_exported_alone(qgis_app, tmp_path):
    gpkg = tmp_path / "two.gpkg"
    for name in ("a", "b"):
        mem = QgsVectorLayer("Polygon?crs=EPSG:32618&field=cls:string", name, "memory")
        f = QgsFeature(mem.fields())
        f.setAttributes([name])
        f.setGeometry(QgsGeometry.fromWkt("POLYGON ((0 0, 10 0, 10 10, 0 0))"))
        mem.dataProvider().addFeatures([f])
        from qgis.core import QgsVectorFileWriter

        opts = QgsVectorFileWriter.SaveVectorOptions()
        opts.driverName, opts.layerName = "GPKG", name
        if gpkg.exists():
            opts.actionOnExistingFile = QgsVectorFileWriter.CreateOrOverwriteLayer
        QgsVectorFileWriter.writeAsVectorFormatV3(mem, str(gpkg), QgsProject.instance().transformContext(), opts)
    layer_b = QgsVectorLayer(f"{gpkg}|layername=b", "b", "ogr")
    out = layers.vector_path(layer_b)
    assert out != str(gpkg)
    assert [f["cls"] for f in QgsVectorLayer(out, "o", "ogr").getFeatures()] == ["b"]


def test_category_colours_come_from_the_categorized_style(qgis_app):
    layer = QgsVectorLayer("Polygon?crs=EPSG:32618&field=cls:string", "labels", "memory")
    cats = []
    for value, colour in (("water", "#1f78b4"), ("forest", "#33a02c")):
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(colour))
        cats.append(QgsRendererCategory(value, symbol, value))
    layer.setRenderer(QgsCategorizedSymbolRenderer("cls", cats))
    assert layers.category_colours(layer, "cls") == {"water": "#1f78b4", "forest": "#33a02c"}
    assert layers.category_colours(layer, "other") == {}
