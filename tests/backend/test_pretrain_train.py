"""`geolink pretrain` end to end on tiny settings: losses, package, resume, two-process DDP (gloo)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from geolink.cli import main as cli_main
from geolink.progress import Progress

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--arch", "vit_tiny_patch16_224", "--image-size", "32", "--tile-size", "32", "--batch-size", "4",
        "--threads", "1", "--device", "cpu", "--lr", "1e-3", "--warmup", "1"]


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
    """A 64 px UTM raster with OSM features (GeoJSON in CRS84) in each of its four 32 px tiles."""
    from osgeo import gdal, osr

    root = tmp_path_factory.mktemp("pairs")
    ds = gdal.GetDriverByName("GTiff").Create(str(root / "r.tif"), 64, 64, 3, gdal.GDT_Byte)
    ds.SetGeoTransform((500000.0, 10.0, 0, 4100000.0, 0, -10.0))
    utm = osr.SpatialReference()
    utm.ImportFromEPSG(32618)
    ds.SetProjection(utm.ExportToWkt())
    rng = np.random.default_rng(1)
    for b in range(3):
        ds.GetRasterBand(b + 1).WriteArray(rng.integers(0, 255, (64, 64)).astype(np.uint8))
    ds = None
    wgs = osr.SpatialReference()
    wgs.ImportFromEPSG(4326)
    wgs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ct = osr.CoordinateTransformation(utm, wgs)
    features, tags = [], ["amenity:cafe", "shop:bakery", "building:yes", "landuse:grass"]
    for i, (x0, y0) in enumerate([(500040, 4099960), (500360, 4099960), (500040, 4099640), (500360, 4099640)]):
        for j in range(3):
            x, y = x0 + 60 * j, y0 - 40 * j
            corners = [(x, y), (x + 50, y), (x + 50, y - 30), (x, y - 30), (x, y)]
            ring = [list(ct.TransformPoint(px, py)[:2]) for px, py in corners]
            features.append({"type": "Feature", "properties": {"label": tags[(i + j) % 4]},
                             "geometry": {"type": "Polygon", "coordinates": [ring]}})
            features.append({"type": "Feature", "properties": {"label": tags[(i + j + 1) % 4]},
                             "geometry": {"type": "Point", "coordinates": list(ct.TransformPoint(x + 5, y - 5)[:2])}})
    (root / "osm.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return root


def _rows(path: Path) -> list:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_two_steps_give_finite_losses_and_a_loadable_package(tiny_pairs, tmp_path):
    out = tmp_path / "run"
    code = cli_main(["--quiet", "pretrain", "--raster", str(tiny_pairs / "r.tif"),
                     "--osm", str(tiny_pairs / "osm.geojson"), "--steps", "2", "--out", str(out), *TINY])
    assert code == 0
    rows = _rows(out / "losses.csv")
    assert [r["step"] for r in rows] == ["1", "2"]
    for r in rows:
        for k in ("mae", "contrastive", "osm"):
            assert math.isfinite(float(r[k])) and float(r[k]) > 0, (k, r)
    from geolink import load_model

    model = load_model(out / "model.safetensors")
    images = torch.zeros(1, 3, 32, 32)
    feats = model.encode(images)
    assert all(torch.isfinite(f).all() for f in feats)


def test_resume_continues_exactly(tiny_pairs, tmp_path):
    from geolink.tasks import pretrain as task

    base = dict(raster=[str(tiny_pairs / "r.tif")], osm=[str(tiny_pairs / "osm.geojson")], arch="vit_tiny_patch16_224",
                image_size=32, tile_size=32, batch_size=4, threads=1, device="cpu", lr=1e-3, warmup=1, steps=3,
                cache_dir=str(tmp_path / "cache"))
    straight = task.run(task.Config(out=str(tmp_path / "a"), **base), Progress())
    cancel = threading.Event()

    def stop_after_two(event):
        if event.get("event") == "progress" and "step 2/3" in event.get("message", ""):
            cancel.set()

    from geolink.errors import Cancelled

    with pytest.raises(Cancelled):
        task.run(task.Config(out=str(tmp_path / "b"), checkpoint_every=1000, **base), Progress(stop_after_two, cancel))
    assert len(_rows(tmp_path / "b" / "losses.csv")) == 2
    resumed = task.run(task.Config(out=str(tmp_path / "b"), **base), Progress())
    assert resumed["figures"]["resumed_from"] == 2
    assert len(_rows(tmp_path / "b" / "losses.csv")) == 3
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resumed run differs from a straight run"
    assert straight["figures"]["steps"] == 3


def test_two_process_gloo_run(tiny_pairs, tmp_path):
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "backend"))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
           "-m", "geolink.cli", "--quiet", "--json", "pretrain", "--raster", str(tiny_pairs / "r.tif"),
           "--osm", str(tiny_pairs / "osm.geojson"), "--steps", "2", "--out", str(out), *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "model.safetensors").exists()
    rows = _rows(out / "losses.csv")
    assert len(rows) == 2 and all(math.isfinite(float(r["loss"])) for r in rows)
    assert '"world_size": 2' in proc.stdout


def test_init_continues_from_an_encoder_only_package(tiny_pairs, tmp_path):
    from geolink.models import create_geolink, load_model, save_package

    torch.manual_seed(0)
    start = create_geolink(arch="vit_tiny_patch16_224", text_dim=384, img_size=32)
    package = save_package(start, tmp_path / "start.safetensors", encoder_only=True)
    out = tmp_path / "continued"
    code = cli_main(["--quiet", "pretrain", "--raster", str(tiny_pairs / "r.tif"), "--init", str(package),
                     "--steps", "1", "--out", str(out), *TINY])
    assert code == 0
    before = load_model(package).state_dict()
    after = load_model(out / "model.safetensors")
    assert after.has_pretraining_parts
    key = "img_encoder.blocks.0.attn.qkv.weight"
    assert not torch.equal(before[key], after.state_dict()[key])  # trained on from the package's weights
    assert (before[key] - after.state_dict()[key]).abs().max() < 0.05
