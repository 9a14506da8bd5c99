"""geolink:trainfromosm and geolink:zones with 'Compare with OSM' through qgis_process.bin, with the plugin
installed from its zip: OpenStreetMap in, a model package and zones with their review categories out."""

from __future__ import annotations

import json
from pathlib import Path

from osgeo import gdal, ogr

from .geodata import require_task
from .test_qgis_process_algorithms import run

OSM_STYLE = Path(__file__).resolve().parents[1] / "data" / "osm" / "s2_virginia_osm_style.geojson"


def test_train_from_osm_then_zones_compared_with_osm(installed_profile, data_dir, tmp_path, tiny_models):
    require_task("finetune")
    raster = tmp_path / "crop.tif"  # the lagoon and the salt marsh of the OSM-style layer
    gdal.Translate(str(raster), str(data_dir / "s2" / "s2_rgbn.tif"), srcWin=[1267, 126, 128, 128])
    model = tmp_path / "from-osm.safetensors"
    res = run(installed_profile, "trainfromosm", INPUT=raster, OSM_FILE=OSM_STYLE, TAG_MAP=0,
              MODEL=tiny_models["encoder"], OUTPUT=model, EPOCHS=1, HEAD=2, BATCH_SIZE=4)
    assert Path(res["OUTPUT"]) == model and model.exists()
    metrics = json.loads(res["METRICS"])
    assert metrics["classes"] == ["water", "wetland"]
    assert metrics["osm_labels"]["tag_map"] == "landcover" and metrics["osm_labels"]["classes"]["water"]["area_km2"] > 0
    assert "OSM label area" in Path(res["REPORT"]).read_text()

    zones = run(installed_profile, "zones", INPUT=raster, OSM_FILE=OSM_STYLE, MODEL=model, COMPARE_OSM="true",
                OUTPUT=tmp_path / "zones.gpkg")
    ds = ogr.Open(zones["OUTPUT"])  # keep the dataset alive while its layer is read
    verdicts = {f.GetField("osm_review") for f in ds.GetLayer(0)}
    assert verdicts and verdicts <= {"missing in OSM", "agrees", "disagrees"}
    assert "osm_review" in (tmp_path / "zones.qml").read_text()


def test_train_from_osm_refuses_a_broken_tag_map(installed_profile, data_dir, tmp_path, tiny_models):
    from .conftest import qgis_process

    raster = tmp_path / "crop.tif"
    gdal.Translate(str(raster), str(data_dir / "s2" / "s2_rgbn.tif"), srcWin=[1267, 126, 64, 64])
    broken = tmp_path / "map.json"
    broken.write_text('{"classes": [{"name": "water", "tags": ["natural:water"]}]}')
    out = qgis_process(installed_profile, "run", "geolink:trainfromosm", "--", f"INPUT={raster}",
                       f"OSM_FILE={OSM_STYLE}", "TAG_MAP=2", f"TAG_MAP_FILE={broken}",
                       f"MODEL={tiny_models['encoder']}", f"OUTPUT={tmp_path / 'm.safetensors'}")
    assert out.returncode != 0
    assert "'natural:water', which is not in the form key=value or key=*" in out.stdout + out.stderr
    assert not (tmp_path / "m.safetensors").exists()
