"""`geolink finetune` end to end on a real Sentinel-2 crop with tiny models: the package works in classify,
the report, resume after a cancel, unfreezing, OSM-aware training, and bad input."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from osgeo import gdal

from geolink.config import build_config
from geolink.errors import Cancelled, InputError
from geolink.progress import Progress
from geolink.tasks import load_task
from geolink.worker import run_job

from .finetune_helpers import crop_raster, labels_in_crop

X, Y, SIZE = 192, 1152, 384  # forest, cropland and built-up polygons
E0, N0 = 435730 + 10 * X, 4179460 - 10 * Y
NORM = {"low_percentile": 2, "high_percentile": 98, "mean": 0.5, "std": 0.25}


def _tiny_package(path, osm: bool = False):
    from geolink.models import ModelCard, create_geolink, save_package

    torch.manual_seed(0)
    extra = {"osm_dim": 32, "fusion_dim": 32, "fusion_heads": 2} if osm else {}
    model = create_geolink("tiny", text_dim=384, img_size=64, osm=osm, pretraining=False,
                           vit_overrides={"depth": 2, "embed_dim": 32, "num_heads": 2}, **extra)
    save_package(model, path, ModelCard.for_model(model, provenance={"note": "random init, tests"},
                                                    normalisation=NORM, gsd=10))
    return path


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("finetune")
    return {"raster": str(crop_raster(data_dir / "s2" / "s2_rgbn.tif", tmp / "crop.tif", X, Y, SIZE)),
            "labels": str(labels_in_crop(tmp / "labels.geojson", X, Y, SIZE)),
            "model": str(_tiny_package(tmp / "base.safetensors")), "dir": tmp}


def _config(inputs, out, **extra):
    values = {"raster": inputs["raster"], "labels": inputs["labels"], "class_field": "class", "model": inputs["model"],
              "out": str(out), "epochs": 3, "batch_size": 8, **extra}
    return build_config(load_task("finetune").Config, values)


def _run(inputs, out, progress=None, **extra):
    return load_task("finetune").run(_config(inputs, out, **extra), progress or Progress())


def test_worker_job_writes_a_package_classify_can_use(inputs, tmp_path):
    from geolink.models import GeoLinkSegmenter, load_package

    out = tmp_path / "ft.safetensors"
    events = []
    config = {"raster": inputs["raster"], "labels": inputs["labels"], "class_field": "class",
              "model": inputs["model"], "out": str(out), "epochs": 2, "members": 3,
              "colors": {"forest": "#00ff00"}}
    assert run_job({"task": "finetune", "config": config}, events.append, threading.Event()) == 0
    result = events[-1]
    assert result["event"] == "result", events[-1]
    assert set(result["outputs"]) >= {"model", "report_json", "report_html"}
    assert not (tmp_path / "ft.finetune-state.safetensors").exists()  # finished: no state left

    model = load_package(out)
    assert isinstance(model, GeoLinkSegmenter)
    classes = model.card.head["classes"]
    assert [c["name"] for c in classes] == ["built-up", "cropland", "forest"]
    assert classes[2]["color"] == "#00ff00"
    card = model.card  # the package describes itself, not its base
    assert card.name == "ft" and card.head["decoder"] == "detail" and card.gsd == pytest.approx(10.0)
    assert (card.head["members"], card.head["width"]) == (3, 128) and len(model.head.members) == 3
    prov = card.provenance
    assert prov["task"] == "finetune" and prov["base_model"]["name"] == "base" and "note" not in prov
    assert prov["patch_mix"] == 0.0
    data = prov["training_data"]
    assert data["raster"] == "crop.tif" and data["labels"] == "labels.geojson" and data["gsd_m"] == pytest.approx(10.0)
    assert list(data["classes"]) == ["built-up", "cropland", "forest"] and min(data["classes"].values()) > 0
    held = prov.get("test") or prov["validation"]
    assert held["balanced_accuracy"] == result["figures"]["balanced_accuracy"] and prov["date"].startswith("20")
    assert "'base'" in prov["summary"] and "crop.tif" in prov["summary"] and "3 decoders averaged" in prov["summary"]
    norm = card.normalisation  # the percentile stretch trained with is kept, for crops and other scenes
    assert len(norm["low"]) == len(norm["high"]) == 3 and all(lo < hi for lo, hi in zip(norm["low"], norm["high"]))
    assert 0 < min(norm["low"]) and max(norm["high"]) < 10000  # Sentinel-2 L1C reflectance x 10000
    assert norm["mean"] == NORM["mean"] and norm["std"] == NORM["std"] and norm["low_high_dtype"] == "UInt16"
    report = json.loads(open(result["outputs"]["report_json"]).read())
    cm = np.array(report["validation"]["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == report["validation"]["pixels"] > 0
    assert 0 <= result["figures"]["overall_accuracy"] <= 1

    classify = load_task("classify")
    mapped = tmp_path / "classes.tif"
    classify.run(build_config(classify.Config, {"raster": inputs["raster"], "model": str(out), "out": str(mapped)}),
                 Progress())
    values = gdal.Open(str(mapped)).ReadAsArray()
    assert values.shape == (SIZE, SIZE) and set(np.unique(values)) <= {0, 1, 2}


def test_cancel_then_resume(inputs, tmp_path):
    out = tmp_path / "r.safetensors"
    cancel = threading.Event()

    def stop_after_epoch_2(event):
        if event.get("event") == "log" and event["message"].startswith("epoch 2"):
            cancel.set()

    with pytest.raises(Cancelled):
        _run(inputs, out, Progress(stop_after_epoch_2, cancel), epochs=4, patience=50, head="linear", augment=1)
    state = tmp_path / "r.finetune-state.safetensors"
    assert state.exists() and not out.exists()
    logs = []
    result = _run(inputs, out, Progress(lambda e: logs.append(e.get("message", ""))), epochs=4, patience=50,
                  head="linear", augment=1)
    assert any("Resuming fine-tuning after epoch 2" in m for m in logs)
    history = json.loads(open(result["outputs"]["report_json"]).read())["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert out.exists() and not state.exists()


def test_unfreeze_trains_only_the_last_blocks(inputs, tmp_path):
    from geolink.models import load_package

    base = load_package(inputs["model"]).state_dict()
    tuned = load_package(_run(inputs, tmp_path / "u.safetensors", epochs=1, unfreeze=1, head="fpn", members=2,
                              augment=1, patch_mix=1.0)["outputs"]["model"]).encoder.state_dict()  # mixed features
    last, first = "img_encoder.blocks.1.mlp.fc1.weight", "img_encoder.blocks.0.mlp.fc1.weight"
    assert not torch.equal(base[last], tuned[last])
    assert torch.equal(base[first], tuned[first])


def test_patch_mix_changes_the_training(inputs, tmp_path):
    from geolink.models import load_package

    heads = [load_package(_run(inputs, tmp_path / f"m{share}.safetensors", epochs=1, head="linear", augment=1,
                               patch_mix=share)["outputs"]["model"]) for share in (0.0, 1.0)]
    assert [h.card.provenance["patch_mix"] for h in heads] == [0.0, 1.0]
    assert not torch.equal(heads[0].head.classifier.weight, heads[1].head.classifier.weight)


def test_osm_aware_head(inputs, tmp_path):
    osm = tmp_path / "osm.geojson"
    feats = [("landuse:farmland", [(E0 + 500, N0 - 500), (E0 + 1500, N0 - 500), (E0 + 1500, N0 - 1500)]),
             ("natural:wood", [(E0 + 2000, N0 - 2000), (E0 + 3000, N0 - 2000), (E0 + 3000, N0 - 3000)]),
             ("building:yes", [(E0 + 100, N0 - 3100), (E0 + 300, N0 - 3100), (E0 + 300, N0 - 3300)])]
    osm.write_text(json.dumps({"type": "FeatureCollection",
                               "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}},
                               "features": [{"type": "Feature", "properties": {"label": label},
                                             "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]}}
                                            for label, ring in feats]}))
    base = _tiny_package(tmp_path / "osm-base.safetensors", osm=True)
    result = _run({**inputs, "model": str(base)}, tmp_path / "o.safetensors", epochs=1, osm=[str(osm)],
                  head="fpn", members=3, patch_mix=1.0)  # averaged decoders on mixed OSM-fused features
    assert result["figures"]["mean_iou"] is not None

    zones = load_task("zones")
    out = tmp_path / "zones.gpkg"
    zones.run(build_config(zones.Config, {"raster": inputs["raster"], "model": result["outputs"]["model"],
                                          "osm": [str(osm)], "out": str(out)}), Progress())
    from osgeo import ogr

    ds = ogr.Open(str(out))
    assert ds.GetLayer(0).GetFeatureCount() > 0


def test_bad_input(inputs, tmp_path):
    with pytest.raises(InputError, match="no field 'klass'"):
        _run(inputs, tmp_path / "a.safetensors", class_field="klass")
    not_a_model = tmp_path / "weights.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(not_a_model))
    with pytest.raises(InputError, match="no GeoLink encoder"):
        _run(inputs, tmp_path / "b.safetensors", model=str(not_a_model))
    with pytest.raises(InputError, match="multiple of 32"):
        _run(inputs, tmp_path / "e.safetensors", tile_size=48, head="fpn")
    with pytest.raises(InputError, match="must be a .safetensors"):
        _run(inputs, tmp_path / "c.tif")
    single = tmp_path / "single.geojson"
    fc = json.loads(open(inputs["labels"]).read())
    fc["features"] = [f for f in fc["features"] if f["properties"]["class"] == "forest"]
    single.write_text(json.dumps(fc))
    with pytest.raises(InputError, match="Only one class"):
        _run({**inputs, "labels": str(single)}, tmp_path / "d.safetensors")
