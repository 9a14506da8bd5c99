"""Every algorithm through qgis_process.bin, with the plugin installed from its zip into a throw-away profile."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Tuple

import pytest
from osgeo import gdal

from geolink_qgis.paths import resources_dir

from . import tiny
from .conftest import qgis_process
from .geodata import helsinki_osm_near_crop, require_task, s2_crop, s2_crop_over_helsinki


def run(env: dict, alg: str, **params) -> dict:
    args = [f"{k}={v}" for k, v in params.items()]
    out = qgis_process(env, "--json", "run", f"geolink:{alg}", "--", *args)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout[out.stdout.index("{"):])["results"]


def run_all(env: dict, jobs: Dict[str, Tuple[str, dict]]) -> Dict[str, dict]:
    """Several qgis_process runs at once (each is its own process, as a batch script would start them)."""
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(run, env, alg, **params) for name, (alg, params) in jobs.items()}
        return {name: f.result() for name, f in futures.items()}


def test_classify_with_input_and_output_only(installed_profile, data_dir, tmp_path):
    require_task("classify")
    if not (resources_dir() / "models" / "default.safetensors").exists():
        pytest.skip("the embedded default model is not in resources/models yet")
    out = tmp_path / "out.tif"
    results = run(installed_profile, "classify", INPUT=s2_crop(data_dir, tmp_path / "in.tif", size=64), OUTPUT=out)
    ds = gdal.Open(str(out))  # keep the dataset alive while its band is used
    assert Path(results["OUTPUT"]) == out and ds.GetRasterBand(1).GetColorTable() is not None


def test_classify_embed_zones_from_qgis_process(installed_profile, data_dir, tmp_path, tiny_models):
    require_task("embed")
    require_task("zones")
    raster = s2_crop_over_helsinki(data_dir, tmp_path / "hel.tif", size=64)
    osm = helsinki_osm_near_crop(data_dir, tmp_path / "osm.gpkg", size=64)
    res = run_all(installed_profile, {
        "classes": ("classify", dict(INPUT=raster, MODEL=tiny_models["segmentation"], OUTPUT=tmp_path / "classes.tif")),
        "embed": ("embed", dict(INPUT=raster, MODEL=tiny_models["encoder"], OUTPUT=tmp_path / "emb.tif")),
        "zones": ("zones", dict(INPUT=raster, OSM_FILE=osm, MODEL=tiny_models["segmentation"], OSM_MAX_NODES=16,
                                OUTPUT=tmp_path / "zones.gpkg"))})
    ds = gdal.Open(res["classes"]["OUTPUT"])
    ds.GetMetadata()  # makes GDAL 3.6's GeoTIFF driver read the .aux.xml holding the category names
    assert ds.GetRasterBand(1).GetCategoryNames() == tiny.CLASSES
    assert gdal.Open(res["embed"]["OUTPUT"]).RasterCount > 3 and Path(res["embed"]["PREVIEW"]).exists()
    zones = gdal.OpenEx(res["zones"]["OUTPUT"])
    assert zones.GetLayer(0).GetFeatureCount() > 0
    assert zones.GetMetadataItem("GEOLINK_OSM_MAX_NODES") == "16"


def test_finetune_and_import_from_qgis_process(installed_profile, data_dir, tmp_path, tiny_models, repo_root):
    from tests.backend.finetune_helpers import labels_in_crop

    require_task("finetune")
    x, y, size = 144, 1264, 96  # a crop holding whole forest and cropland polygons
    raster = tmp_path / "crop.tif"
    gdal.Translate(str(raster), str(data_dir / "s2" / "s2_rgbn.tif"), srcWin=[x, y, size, size])
    labels = labels_in_crop(tmp_path / "labels.geojson", x, y, size)
    jobs = {"finetune": ("finetune", dict(INPUT=raster, LABELS=labels, CLASS_FIELD="class",
                                          MODEL=tiny_models["encoder"], OUTPUT=tmp_path / "mine.safetensors",
                                          EPOCHS=1, HEAD=2, BATCH_SIZE=4))}
    official = repo_root.parent / "shared" / "reference" / "fusion_vit_tiny" / "checkpoint.pth"
    if official.exists():  # an official-format checkpoint is only among ../shared's reference data
        require_task("import-checkpoint")
        jobs["import"] = ("importcheckpoint", dict(INPUT=official, OUTPUT=tmp_path / "official.safetensors"))
    res = run_all(installed_profile, jobs)
    assert Path(res["finetune"]["OUTPUT"]).exists() and json.loads(res["finetune"]["METRICS"])
    if "import" in res:
        assert res["import"]["MODEL_NAME"] == "official" and Path(res["import"]["OUTPUT"]).exists()


def test_backend_warnings_are_processing_warnings(installed_profile, data_dir, tmp_path, tiny_models):
    """An OSM file with nothing in the raster's area: the run succeeds and says so as a warning, not an error."""
    require_task("zones")
    osm = tmp_path / "empty.geojson"
    osm.write_text('{"type": "FeatureCollection", "features": []}')
    out = qgis_process(installed_profile, "run", "geolink:zones", "--",
                       f"INPUT={s2_crop(data_dir, tmp_path / 'in.tif', size=64)}", f"OSM_FILE={osm}",
                       f"MODEL={tiny_models['segmentation']}", f"OUTPUT={tmp_path / 'zones.gpkg'}")
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert "WARNING:\tThe OSM files hold no feature in the raster's area" in text
    assert "ERROR:" not in text
