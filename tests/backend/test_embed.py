"""`geolink embed` on a real Sentinel-2 crop: feature grid at patch resolution, nodata, layers, PCA preview."""

from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from geolink.errors import InputError
from geolink.progress import Progress
from geolink.tasks import embed

from .raster_helpers import partials, s2_crop, set_nodata_box
from .tiny_models import make_package


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "enc.safetensors", None)


def run(model, raster, out, **kw):
    return embed.run(embed.Config(raster=str(raster), model=str(model), out=str(out), device="cpu", **kw), Progress())


def test_features_at_patch_resolution_with_nodata_and_preview(encoder, data_dir, tmp_path):
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=100)  # 100 px -> 7 patches (the last one padded)
    set_nodata_box(raster, 0, 0, 32, 100)  # two patch columns of nodata
    result = run(encoder, raster, tmp_path / "emb.tif")
    ds = gdal.Open(str(tmp_path / "emb.tif"))
    src = gdal.Open(str(raster)).GetGeoTransform()
    gt = ds.GetGeoTransform()
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (7, 7, 64)  # fusion_dim of the tiny model
    assert gt[0] == src[0] and gt[3] == src[3] and gt[1] == 16 * src[1]
    feats = ds.ReadAsArray()
    assert np.isnan(feats[:, :, :2]).all() and np.isfinite(feats[:, :, 2:]).all()
    assert feats[:, :, 2:].std(axis=(1, 2)).mean() > 0  # places differ
    prev = gdal.Open(result["outputs"]["preview"])
    rgb = prev.ReadAsArray()
    assert result["outputs"]["preview"].endswith("emb_pca.tif") and rgb.shape == (3, 7, 7)
    assert (rgb[:, :, :2] == 0).all() and (rgb[:, :, 2:] >= 1).all() and rgb[:, :, 2:].std() > 10
    assert (tmp_path / "emb_pca.qml").exists() and partials(tmp_path) == []
    assert ds.GetMetadataItem("GEOLINK_TASK") == "embed"


def test_layer_choice_and_image_only_model(data_dir, tmp_path):
    model = make_package(tmp_path / "img.safetensors", None, dim=48, osm=False)
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=48)
    first = run(model, raster, tmp_path / "l1.tif", layer=1)
    assert first["figures"]["channels"] == 48
    a = gdal.Open(str(tmp_path / "l1.tif")).ReadAsArray()
    run(model, raster, tmp_path / "last.tif")
    b = gdal.Open(str(tmp_path / "last.tif")).ReadAsArray()
    assert a.shape == b.shape == (48, 3, 3) and not np.allclose(a, b)
    with pytest.raises(Exception, match="layer|block"):
        run(model, raster, tmp_path / "bad.tif", layer=9)
    with pytest.raises(InputError):
        run(model, raster, tmp_path / "bad.tif", layer=-1)
    assert not (tmp_path / "bad.tif").exists()
