"""`geolink zones` on a real Sentinel-2 crop: blocks cut by OSM ways (minor ways do not cut), class shares
and confidence per zone in the raster's CRS; sieved class regions without ways; atomic output."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from osgeo import gdal, ogr, osr

from geolink.errors import Cancelled, InputError
from geolink.progress import Progress
from geolink.tasks import zones

from .raster_helpers import osm_geojson, partials, s2_crop
from .tiny_models import make_package

CLASSES = ["water", "vegetation", "built-up"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "lc.safetensors", CLASSES)


def run(model, raster, osm, out, progress=None, **kw):
    config = zones.Config(raster=str(raster), osm=[str(p) for p in osm], model=str(model), out=str(out),
                          device="cpu", **kw)
    return zones.run(config, progress or Progress())


def features(path):
    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("zones")
    rows = [{**f.items(), "geom": f.GetGeometryRef().Clone()} for f in layer]
    return rows, layer.GetSpatialRef().Clone()


def test_blocks_between_ways_with_shares_and_confidence(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=96)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [
        ("highway:primary", [(-5, 40), (101, 44)]), ("highway:residential", [(50, -5), (46, 101)]),
        ("highway:footway", [(0, 0), (96, 96)]), ("building:yes", [(5, 5), (9, 5), (9, 9), (5, 9), (5, 5)])])
    result = run(model, raster, [osm], tmp_path / "zones.gpkg")
    rows, srs = features(tmp_path / "zones.gpkg")
    assert result["figures"]["zone_origin"] == "osm_block" and len(rows) == 4  # the footway does not cut
    assert srs.IsSame(osr.SpatialReference(wkt=gdal.Open(str(raster)).GetProjection()))
    total_area = sum(r["geom"].GetArea() for r in rows)
    assert total_area == pytest.approx(960 * 960, rel=0.05)  # the extent minus the roads' buffer
    for r in rows:
        shares = [r[f"share_{c.replace('-', '_')}"] for c in CLASSES]
        assert sum(shares) == pytest.approx(1, abs=2e-3)
        assert r["class_name"] == CLASSES[r["class"]] and r["majority_share"] == pytest.approx(max(shares))
        assert 1 / 3 <= r["confidence"] <= 1 and r["pixels"] > 0 and r["origin"] == "osm_block"
        assert r["color"].startswith("#")
    assert "categorizedSymbol" in (tmp_path / "zones.qml").read_text()
    assert partials(tmp_path) == []


def test_without_ways_zones_are_sieved_class_regions(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("amenity:school", [(30, 30)])])
    result = run(model, raster, [osm], tmp_path / "zones.gpkg", sieve=20)
    rows, _ = features(tmp_path / "zones.gpkg")
    assert result["figures"]["zone_origin"] == "class_region" and rows
    assert all(r["majority_share"] == pytest.approx(1.0) for r in rows)  # a region is one class
    assert all(r["pixels"] >= 20 for r in rows)
    assert sum(r["pixels"] for r in rows) == 64 * 64


def test_refusals_and_cancel_leave_no_geopackage(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=96)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("highway:primary", [(0, 40), (96, 44)])])
    with pytest.raises(InputError, match="GeoPackage"):
        run(model, raster, [osm], tmp_path / "zones.shp")
    cancel = threading.Event()

    def sink(event):
        if event["event"] == "progress" and "batch 2/" in event["message"]:
            cancel.set()
    with pytest.raises(Cancelled):
        run(model, raster, [osm], tmp_path / "zones.gpkg", progress=Progress(sink, cancel))
    assert not (tmp_path / "zones.gpkg").exists() and partials(tmp_path) == []


def test_real_naip_sample_with_its_osm(model, shared_dir, tmp_path):
    """The paper's US NAIP example made a GeoTIFF from its bbox (EPSG:4326), zoned with its own OSM."""
    from geolink.pretraining.safe_pickle import read_bbox

    sample = shared_dir / "geolink-examples" / "osm2graph_example" / "a702502933_US_21"
    west, south, east, north = read_bbox(sample / "a702502933_US_21.pickle")
    raster = tmp_path / "naip.tif"
    gdal.Translate(str(raster), str(sample / "a702502933_US_21.jpg"), outputSRS="EPSG:4326",
                   outputBounds=[west, north, east, south])
    osm = sorted(sample.glob("*.geojson"))
    result = run(model, raster, osm, tmp_path / "zones.gpkg", tile_size=96)
    rows, srs = features(tmp_path / "zones.gpkg")
    assert srs.GetAuthorityCode(None) == "4326" and result["figures"]["windows_with_osm"] > 0
    assert result["figures"]["zone_origin"] == "osm_block" and len(rows) >= 2
    width_m = (east - west) * 111_320 * np.cos(np.radians((north + south) / 2))
    height_m = (north - south) * 111_320
    assert sum(r["area_m2"] for r in rows) == pytest.approx(width_m * height_m, rel=0.15)  # minus the roads
