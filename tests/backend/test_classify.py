"""`geolink classify` on small real rasters with a tiny random model: grid, styles, nodata, OSM, bad input,
atomic writes and cancel; once through the real worker process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest
from osgeo import gdal, osr

from geolink.errors import Cancelled, InputError, ModelError
from geolink.progress import Progress
from geolink.tasks import classify

from .raster_helpers import crop, osm_geojson, partials, read, s2_crop, set_nodata_box
from .tiny_models import make_package

CLASSES = ["water", "vegetation", "built-up"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "tiny-landcover.safetensors", CLASSES)


def run(model, raster, out, progress=None, **kw):
    config = classify.Config(raster=str(raster), model=str(model), out=str(out), device="cpu", **kw)
    return classify.run(config, progress or Progress())


def test_classify_s2_crop_grid_styles_nodata_and_provenance(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=96)
    set_nodata_box(raster, 0, 0, 20, 30)
    out, prob = tmp_path / "lc.tif", tmp_path / "prob.tif"
    result = run(model, raster, out, probabilities=str(prob))
    src, ds = gdal.Open(str(raster)), gdal.Open(str(out))
    assert ds.GetGeoTransform() == src.GetGeoTransform()
    assert (ds.RasterXSize, ds.RasterYSize) == (96, 96)
    assert osr.SpatialReference(wkt=ds.GetProjection()).IsSame(osr.SpatialReference(wkt=src.GetProjection()))
    band = ds.GetRasterBand(1)
    assert band.GetNoDataValue() == 255
    assert band.GetCategoryNames() == CLASSES
    assert band.GetColorTable().GetColorEntry(0)[:3] == (0x1F, 0x78, 0xB4)
    classes = band.ReadAsArray()
    assert (classes[:30, :20] == 255).all() and (classes[30:] < 3).all() and (classes[:, 20:] < 3).all()
    assert ds.GetMetadataItem("GEOLINK_MODEL") == "tiny-landcover"
    from geolink.model_store import sha256_of
    assert ds.GetMetadataItem("GEOLINK_MODEL_SHA256") == sha256_of(model)
    assert "paletteEntry" in (tmp_path / "lc.qml").read_text()
    p = gdal.Open(str(prob)).ReadAsArray().astype(int)
    assert p.shape == (3, 96, 96) and (p[:, :30, :20] == 255).all()
    total = p[:, 30:, :].sum(0)
    assert np.abs(total - 100).max() <= 2  # percent, rounded
    assert (p.argmax(0)[30:] == classes[30:]).mean() > 0.97  # ties at rounding aside
    assert sum(result["figures"]["class_shares"].values()) == pytest.approx(1, abs=1e-3)
    assert partials(tmp_path) == []


def test_uint8_rgb_resampled_to_the_cards_gsd(tmp_path, data_dir):
    model = make_package(tmp_path / "gsd.safetensors", CLASSES, gsd=0.4)
    raster = crop(data_dir / "OSBS_029.tif", tmp_path / "osbs.tif", 0, 0, 200, 120)
    result = run(model, raster, tmp_path / "lc.tif")
    ds = gdal.Open(str(tmp_path / "lc.tif"))
    assert (ds.RasterXSize, ds.RasterYSize) == (50, 30)
    assert ds.GetGeoTransform()[1] == pytest.approx(0.4)
    assert ds.GetGeoTransform()[0] == pytest.approx(gdal.Open(str(raster)).GetGeoTransform()[0])
    assert result["figures"]["pixel_size"] == pytest.approx(0.4)
    run(model, raster, tmp_path / "native.tif", native=True)
    assert gdal.Open(str(tmp_path / "native.tif")).RasterXSize == 200


def test_far_from_the_cards_gsd_is_warned_in_metres(tmp_path, data_dir):
    """At the card's GSD: resampled, no warning. Forced to native 0.1 m for a 0.4 m model: a warning giving both
    resolutions in metres. A geographic raster: its resolution is logged in metres, not degrees."""
    from osgeo import gdal

    model = make_package(tmp_path / "gsd.safetensors", CLASSES, gsd=0.4)
    raster = crop(data_dir / "OSBS_029.tif", tmp_path / "osbs.tif", 0, 0, 120, 120)

    def logs(raster, model, out, **kw):
        events = []
        run(model, raster, tmp_path / out, progress=Progress(events.append), **kw)
        return [e for e in events if e["event"] == "log"]

    resampled = logs(raster, model, "a.tif")
    assert not [e for e in resampled if e["level"] == "warning"]
    assert any("at 0.4 m (resampled from 0.1 m)" in e["message"] for e in resampled)
    native = [e["message"] for e in logs(raster, model, "b.tif", native=True) if e["level"] == "warning"]
    assert len(native) == 1 and "trained at 0.4 m" in native[0] and "processed at 0.1 m" in native[0]
    assert "4x finer" in native[0]
    geo = tmp_path / "geo.tif"
    gdal.Warp(str(geo), str(s2_crop(data_dir, tmp_path / "s2.tif", size=64)), dstSRS="EPSG:4326")
    model10 = make_package(tmp_path / "s2model.safetensors", CLASSES, gsd=10.0)
    line = next(e["message"] for e in logs(geo, model10, "c.tif", native=True) if e["message"].startswith("Raster"))
    assert "(native)" in line and " m (native)" in line and "e-0" not in line
    metres = float(line.split(" at ")[1].split(" m ")[0])
    assert 8 < metres < 12  # the 10 m scene, warped to degrees, is still about 10 m a pixel


def test_processing_extent_and_band_mapping(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=80)
    gt = gdal.Open(str(raster)).GetGeoTransform()
    extent = f"{gt[0] + 100},{gt[3] - 500},{gt[0] + 400},{gt[3] - 200}"
    run(model, raster, tmp_path / "cut.tif", extent=extent, bands="4,3,2")
    ds = gdal.Open(str(tmp_path / "cut.tif"))
    assert (ds.RasterXSize, ds.RasterYSize) == (30, 30)
    assert ds.GetGeoTransform()[0] == gt[0] + 100 and ds.GetGeoTransform()[3] == gt[3] - 200


def test_raster_smaller_than_a_window_is_padded(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=20)  # the model's window is 32 px
    run(model, raster, tmp_path / "lc.tif")
    assert (read(tmp_path / "lc.tif") < 3).all()


def test_osm_graphs_reach_the_windows(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [
        ("highway:residential", [(0, 10), (64, 12)]), ("building:yes", [(5, 5), (9, 5), (9, 9), (5, 9), (5, 5)]),
        ("amenity:school", [(40, 40)])])
    plain = run(model, raster, tmp_path / "plain.tif")
    fused = run(model, raster, tmp_path / "fused.tif", osm=[str(osm)], probabilities=str(tmp_path / "fused_p.tif"))
    assert plain["figures"]["windows_with_osm"] == 0
    assert 0 < fused["figures"]["windows_with_osm"] < fused["figures"]["windows"]
    assert "osm.geojson" in gdal.Open(str(tmp_path / "fused.tif")).GetMetadataItem("GEOLINK_OSM")
    assert gdal.Open(str(tmp_path / "fused.tif")).GetMetadataItem("GEOLINK_OSM_MAX_NODES") is None

    # --osm-max-nodes 1: one entity per window enters the fusion, recorded in the output's metadata
    run(model, raster, tmp_path / "capped.tif", osm=[str(osm)], osm_max_nodes=1,
        probabilities=str(tmp_path / "capped_p.tif"))
    assert gdal.Open(str(tmp_path / "capped.tif")).GetMetadataItem("GEOLINK_OSM_MAX_NODES") == "1"
    assert (read(tmp_path / "capped_p.tif") != read(tmp_path / "fused_p.tif")).any()
    with pytest.raises(InputError, match="osm-max-nodes"):
        run(model, raster, tmp_path / "bad.tif", osm=[str(osm)], osm_max_nodes=-1)
    assert not (tmp_path / "bad.tif").exists()


def test_cancel_mid_run_leaves_no_output(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=160)
    cancel = threading.Event()
    seen = []

    def sink(event):
        if event["event"] == "progress" and "batch" in event["message"]:
            seen.append(event)
            if len(seen) == 4:
                cancel.set()
    config = classify.Config(raster=str(raster), model=str(model), out=str(tmp_path / "lc.tif"), device="cpu",
                             probabilities=str(tmp_path / "p.tif"))
    with pytest.raises(Cancelled):
        classify.run(config, Progress(sink, cancel))
    assert not (tmp_path / "lc.tif").exists() and not (tmp_path / "p.tif").exists()
    assert not (tmp_path / "lc.qml").exists() and partials(tmp_path) == []


def test_bad_inputs_are_refused_with_clear_messages_and_leave_nothing(model, data_dir, tmp_path):
    out = tmp_path / "lc.tif"
    nocrs = s2_crop(data_dir, tmp_path / "nocrs.tif", size=32)
    ds = gdal.Open(str(nocrs), gdal.GA_Update)
    ds.SetProjection("")
    ds = None
    with pytest.raises(InputError, match="no CRS"):
        run(model, nocrs, out)
    rotated = s2_crop(data_dir, tmp_path / "rot.tif", size=32)
    ds = gdal.Open(str(rotated), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    ds.SetGeoTransform([gt[0], gt[1], 2.0, gt[3], 1.0, gt[5]])
    ds = None
    with pytest.raises(InputError, match="rotated"):
        run(model, rotated, out)
    corrupt = tmp_path / "corrupt.tif"
    corrupt.write_bytes(s2_crop(data_dir, tmp_path / "ok.tif", size=32).read_bytes()[:300])
    with pytest.raises(InputError, match="Cannot read"):
        run(model, corrupt, out)
    grey = crop(data_dir / "OSBS_029.tif", tmp_path / "grey.tif", 0, 0, 40, 40, bands=[1])
    with pytest.raises(InputError, match="1 band"):
        run(model, grey, out)
    run(model, grey, out, bands="1,1,1")  # the documented way round it
    out.unlink()
    empty = s2_crop(data_dir, tmp_path / "empty.tif", size=40)
    set_nodata_box(empty, 0, 0, 40, 40)
    with pytest.raises(InputError, match="no valid pixels|nodata"):
        run(model, empty, out)
    encoder = make_package(tmp_path / "enc.safetensors", None)
    with pytest.raises(ModelError, match="segmentation head"):
        run(encoder, s2_crop(data_dir, tmp_path / "s2.tif", size=32), out)
    assert not out.exists() and partials(tmp_path) == []


def test_all_nodata_uint8_raster_is_refused(model, data_dir, tmp_path):
    raster = crop(data_dir / "OSBS_029.tif", tmp_path / "o.tif", 0, 0, 40, 40)
    set_nodata_box(raster, 0, 0, 40, 40)
    with pytest.raises(InputError, match="nodata"):
        run(model, raster, tmp_path / "lc.tif")
    assert not (tmp_path / "lc.tif").exists()


def test_through_the_worker_process(model, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=48)
    job = {"task": "classify", "config": {"raster": str(raster), "model": str(model), "device": "cpu",
                                          "out": str(tmp_path / "lc.tif"), "tile_size": 32, "overlap": 8}}
    proc = subprocess.run([sys.executable, "-m", "geolink.worker"], input=json.dumps(job) + "\n",
                          capture_output=True, text=True, timeout=300)
    events = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert events[-1]["event"] == "result" and events[-1]["outputs"]["classes"] == str(tmp_path / "lc.tif")
    assert any("ETA" in e.get("message", "") for e in events if e["event"] == "progress")
    assert read(tmp_path / "lc.tif").shape == (48, 48)


def test_image_only_model_ignores_osm_with_a_warning(data_dir, tmp_path):
    model = make_package(tmp_path / "img.safetensors", CLASSES, osm=False)
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=48)
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [("highway:residential", [(0, 10), (48, 12)])])
    events = []
    config = classify.Config(raster=str(raster), model=str(model), out=str(tmp_path / "lc.tif"), device="cpu",
                             osm=[str(osm)])
    result = classify.run(config, Progress(events.append))
    assert result["figures"]["windows_with_osm"] == 0
    assert any(e["event"] == "log" and "no OSM branch" in e["message"] for e in events)
