"""Colour tables, class names, QML styles and provenance of raster outputs (QGIS reads these files as they are)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, osr

from geolink.atomic import OutputSet
from geolink.models.card import ModelCard
from geolink.raster.styles import categorized_qml, class_table, paletted_qml, rgb_qml, write_qml
from geolink.raster.writer import geotiff, provenance, set_classes

CLASSES = class_table([{"name": "water", "color": "#1f78b4"}, {"name": "forest", "color": "bad"}, "urban & <built>"])


def utm_wkt() -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32618)
    return srs.ExportToWkt()


def test_class_table_fills_missing_names_and_colours():
    assert [c["name"] for c in CLASSES] == ["water", "forest", "urban & <built>"]
    assert CLASSES[0]["color"] == "#1f78b4"
    assert all(len(c["color"]) == 7 and c["color"].startswith("#") for c in CLASSES)
    assert len({c["color"] for c in CLASSES}) == 3


def test_geotiff_with_colour_table_names_nodata_and_metadata(tmp_path):
    path = tmp_path / "c.tif"
    with geotiff(path, 300, 40, 1, "uint8", (0, 10, 0, 400, 0, -10), utm_wkt(), 255, {"GEOLINK_MODEL": "m"}) as out:
        set_classes(out.ds.GetRasterBand(1), CLASSES, 255)
        out.ds.GetRasterBand(1).WriteArray(np.full((40, 300), 2, np.uint8))
    ds = gdal.Open(str(path))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 255  # GDAL 3.6 GTiff reads the .aux.xml (names) only after such a call
    assert band.GetCategoryNames() == ["water", "forest", "urban & <built>"]
    assert band.GetColorTable().GetColorEntry(0) == (31, 120, 180, 255)
    assert band.GetColorTable().GetColorEntry(255)[3] == 0  # nodata transparent
    assert band.GetNoDataValue() == 255 and ds.GetMetadataItem("GEOLINK_MODEL") == "m"
    assert ds.GetMetadataItem("COMPRESSION", "IMAGE_STRUCTURE") == "DEFLATE"
    assert band.GetBlockSize() == [256, 256]
    assert osr.SpatialReference(wkt=ds.GetProjection()).GetAuthorityCode(None) == "32618"


def test_paletted_qml_lists_every_class_with_its_colour_and_escaped_name(tmp_path):
    with OutputSet([tmp_path / "out.tif"]) as outputs:  # the style is a member of its raster's output set
        outputs.partial(tmp_path / "out.tif").write_bytes(b"raster")
        qml = Path(write_qml(outputs, tmp_path / "out.tif", paletted_qml(CLASSES)))
    assert qml.name == "out.qml" and sorted(p.name for p in tmp_path.iterdir()) == ["out.qml", "out.tif"]
    root = ET.parse(qml).getroot()
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [(e.get("value"), e.get("label"), e.get("color")) for e in renderer.iter("paletteEntry")]
    assert entries == [("0", "water", "#1f78b4"), ("1", "forest", CLASSES[1]["color"]),
                       ("2", "urban & <built>", CLASSES[2]["color"])]


def test_rgb_and_categorized_qml_parse():
    rgb = ET.fromstring(rgb_qml().split("\n", 1)[1]).find("pipe/rasterrenderer")
    assert rgb.get("type") == "multibandcolor" and rgb.find("blueBand").text == "3"
    cat = ET.fromstring(categorized_qml("class_name", CLASSES).split("\n", 1)[1]).find("renderer-v2")
    assert cat.get("attr") == "class_name"
    assert [c.get("value") for c in cat.iter("category")] == [c["name"] for c in CLASSES]
    assert len(list(cat.iter("symbol"))) == 3


def test_provenance_names_model_hash_osm_and_version(tmp_path):
    model = tmp_path / "m.safetensors"
    model.write_bytes(b"abc")
    osm = tmp_path / "city.osm.pbf"
    osm.write_bytes(b"")
    meta = provenance("classify", model, ModelCard(name="base"), "in.tif", [str(osm)], {"classes": "a;b"})
    assert meta["GEOLINK_MODEL"] == "m"
    assert meta["GEOLINK_MODEL_SHA256"] == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert meta["GEOLINK_OSM"].startswith("city.osm.pbf (file date ")
    assert meta["GEOLINK_CLASSES"] == "a;b" and meta["GEOLINK_VERSION"]


@pytest.mark.parametrize("n", [1, 12, 40])
def test_palette_sizes(n):
    assert len(class_table([f"c{i}" for i in range(n)])) == n
