"""`geolink similar` and `geolink cluster` on real Sentinel-2 crops with a tiny random encoder, and their math:
similarity to points and example polygons, polygons of matching areas, seeded k-means, and the bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from osgeo import gdal

from geolink.errors import InputError, ModelError
from geolink.explore.vectors import cosine, kmeans, linear_matrix, source_span, upsample
from geolink.progress import Progress
from geolink.tasks import cluster, embed, similar

from .raster_helpers import partials, s2_crop, set_nodata_box
from .tiny_models import make_package


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return make_package(tmp_path_factory.mktemp("models") / "enc.safetensors", None)


@pytest.fixture(scope="module")
def scene(encoder, data_dir, tmp_path_factory):
    """A 96 px crop (6 x 6 patches) with a nodata corner, and its embeddings."""
    folder = tmp_path_factory.mktemp("scene")
    raster = s2_crop(data_dir, folder / "s2.tif", size=96)
    set_nodata_box(raster, 0, 0, 20, 20)
    embed.run(embed.Config(raster=str(raster), model=str(encoder), out=str(folder / "emb.tif"), device="cpu"),
              Progress())
    return raster, folder / "emb.tif"


def xy(raster, col: float, row: float) -> str:
    gt = gdal.Open(str(raster)).GetGeoTransform()
    return f"{gt[0] + col * gt[1]},{gt[3] + row * gt[5]}"


def run_similar(model, raster, out, **kw):
    return similar.run(similar.Config(raster=str(raster), model=str(model), out=str(out), device="cpu", **kw),
                       Progress())


def run_cluster(model, raster, out, **kw):
    return cluster.run(cluster.Config(raster=str(raster), model=str(model), out=str(out), device="cpu", **kw),
                       Progress())


def test_upsampling_matches_torch_bilinear_and_strips_join_exactly():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    cells = rng.normal(size=(2, 7, 9)).astype(np.float32)
    want = F.interpolate(torch.from_numpy(cells)[None], scale_factor=16, mode="bilinear",
                         align_corners=False)[0].numpy()
    cols = linear_matrix(0, 9 * 16, 9, 16, 0, 9)
    whole, ok = upsample(cells, np.ones((7, 9)), linear_matrix(0, 7 * 16, 7, 16, 0, 7), cols)
    assert ok.all() and np.allclose(whole, want, atol=1e-5)
    for r0, r1 in [(0, 40), (40, 41), (41, 100), (100, 112)]:  # any strip, from just the cells it needs
        lo, hi = source_span(r0, r1, 7, 16)
        part, _ = upsample(cells[:, lo:hi], np.ones((hi - lo, 9)), linear_matrix(r0, r1, 7, 16, lo, hi), cols)
        assert np.allclose(part, want[:, r0:r1], atol=1e-5)
    holes = np.ones((7, 9))
    holes[3, 4] = 0  # a no-data cell does not pull its neighbours' values towards 0
    part, ok = upsample(np.ones((1, 7, 9), np.float32), holes, linear_matrix(0, 112, 7, 16, 0, 7), cols)
    assert ok.all() and np.allclose(part, 1.0)


def test_kmeans_is_seeded_and_finds_separated_groups():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8)) * 10
    x = np.concatenate([c + rng.normal(size=(n, 8)) for c, n in zip(centres, (300, 200, 100))])
    a, b = kmeans(x, 3, seed=5), kmeans(x, 3, seed=5)
    assert np.array_equal(a, b)
    assert np.abs(a - centres[[0, 1, 2]]).max() < 0.5  # ordered by size, largest first
    assert np.allclose(cosine(centres, centres).diagonal(), 1.0)


def test_similar_to_points_reuses_embeddings_and_marks_nodata(encoder, scene, tmp_path):
    raster, emb = scene
    at = xy(raster, 56, 56)  # the centre of patch (3, 3)
    result = run_similar(encoder, raster, tmp_path / "sim.tif", at=[at], embeddings=str(emb))
    sim = gdal.Open(str(tmp_path / "sim.tif")).ReadAsArray()
    assert sim.shape == (96, 96)
    assert np.isnan(sim[:20, :20]).all() and np.isfinite(sim[20:, 20:]).all()  # nodata pixel for pixel
    assert np.nanmax(sim) <= 1 and np.nanmin(sim) >= -1 and np.nanstd(sim) > 0.01
    own = sim[55:57, 55:57]  # around the query patch's centre: ~97% its own value (1), ~3% a neighbour's
    assert own.min() > 0.9 and own.mean() > np.nanpercentile(sim, 95)
    assert result["figures"]["queries"] == ["query"]
    qml = (tmp_path / "sim.qml").read_text()
    assert "singlebandpseudocolor" in qml and "colorrampshader" in qml
    ds = gdal.Open(str(tmp_path / "sim.tif"))
    assert ds.GetMetadataItem("GEOLINK_TASK") == "similar" and "query" in ds.GetRasterBand(1).GetDescription()
    # without --embeddings the raster is encoded first: the same features, so the same map
    run_similar(encoder, raster, tmp_path / "again.tif", at=[at])
    assert np.allclose(gdal.Open(str(tmp_path / "again.tif")).ReadAsArray(), sim, equal_nan=True, atol=1e-5)
    # two points are averaged: a different query
    run_similar(encoder, raster, tmp_path / "two.tif", at=[at, xy(raster, 24, 88)], embeddings=str(emb))
    assert not np.allclose(gdal.Open(str(tmp_path / "two.tif")).ReadAsArray(), sim, equal_nan=True)
    assert partials(tmp_path) == []


def test_points_in_another_crs(encoder, scene, tmp_path):
    from osgeo import osr

    raster, emb = scene
    x, y = (float(v) for v in xy(raster, 56, 56).split(","))
    src = osr.SpatialReference(wkt=gdal.Open(str(raster)).GetProjection())
    dst = osr.SpatialReference()
    dst.ImportFromEPSG(4326)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    lon, lat = osr.CoordinateTransformation(src, dst).TransformPoint(x, y)[:2]
    run_similar(encoder, raster, tmp_path / "a.tif", at=[f"{x},{y}"], embeddings=str(emb))
    run_similar(encoder, raster, tmp_path / "b.tif", at=[f"{lon},{lat}"], at_crs="EPSG:4326", embeddings=str(emb))
    a, b = (gdal.Open(str(tmp_path / n)).ReadAsArray() for n in ("a.tif", "b.tif"))
    assert np.allclose(a, b, equal_nan=True)


def example_polygons(raster, path, boxes):
    """A GeoJSON of (class, col0, row0, col1, row1) boxes in pixel coordinates, in the raster's CRS."""
    gt = gdal.Open(str(raster)).GetGeoTransform()
    feats = []
    for name, c0, r0, c1, r1 in boxes:
        ring = [[gt[0] + c * gt[1], gt[3] + r * gt[5]] for c, r in ((c0, r0), (c1, r0), (c1, r1), (c0, r1), (c0, r0))]
        feats.append({"type": "Feature", "properties": {"kind": name},
                      "geometry": {"type": "Polygon", "coordinates": [ring]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "feats": [],
                                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32618"}},
                                "features": feats}))
    return path


def test_examples_per_class_and_polygons_of_matches(encoder, scene, tmp_path):
    raster, emb = scene
    polys = example_polygons(raster, tmp_path / "ex.geojson",
                             [("b", 64, 64, 96, 96), ("a", 32, 32, 48, 48), ("c", 40, 70, 44, 74)])
    result = run_similar(encoder, raster, tmp_path / "sim.tif", examples=str(polys), class_field="kind",
                         embeddings=str(emb), threshold=0.5, polygons=str(tmp_path / "match.gpkg"))
    ds = gdal.Open(str(tmp_path / "sim.tif"))
    assert [ds.GetRasterBand(i).GetDescription() for i in (1, 2, 3)] == \
        ["similarity to a", "similarity to b", "similarity to c"]
    # patch centres inside: one in a's box, 2 x 2 in b's; c's tiny box holds none and gets the patch it touches
    assert result["figures"]["query_cells"] == [1, 4, 1]
    sim = ds.ReadAsArray()
    assert sim[0, 40, 40] > sim[0, 80, 80] and sim[1, 80, 80] > sim[1, 40, 40]
    from osgeo import ogr

    gpkg = ogr.Open(str(tmp_path / "match.gpkg"))  # kept alive while its layer is read
    layer = gpkg.GetLayer("similar")
    names = {f.GetField("class") for f in layer}
    assert names <= {"a", "b", "c"} and layer.GetFeatureCount() == result["figures"]["polygons"] > 0
    assert (tmp_path / "match.qml").exists()
    # without a class field: one query, the mean of all the polygons
    run_similar(encoder, raster, tmp_path / "one.tif", examples=str(polys), embeddings=str(emb))
    assert gdal.Open(str(tmp_path / "one.tif")).RasterCount == 1


def test_bad_queries_are_refused_plainly(encoder, scene, tmp_path):
    raster, emb = scene
    out = tmp_path / "sim.tif"
    with pytest.raises(InputError, match="outside the raster"):
        run_similar(encoder, raster, out, at=[xy(raster, 200, 50)], embeddings=str(emb))
    with pytest.raises(InputError, match="on nodata"):
        run_similar(encoder, raster, out, at=[xy(raster, 5, 5)], embeddings=str(emb))
    with pytest.raises(InputError, match="X,Y"):
        run_similar(encoder, raster, out, at=["here"], embeddings=str(emb))
    with pytest.raises(InputError, match="not both"):
        run_similar(encoder, raster, out, embeddings=str(emb))
    with pytest.raises(InputError, match="go together"):
        run_similar(encoder, raster, out, at=[xy(raster, 50, 50)], threshold=0.5, embeddings=str(emb))
    polys = example_polygons(raster, tmp_path / "far.geojson", [("x", 500, 500, 600, 600)])
    with pytest.raises(InputError, match="No example polygon of examples"):
        run_similar(encoder, raster, out, examples=str(polys), embeddings=str(emb))
    with pytest.raises(InputError, match="no field 'class'"):
        run_similar(encoder, raster, out, examples=str(polys), class_field="class", embeddings=str(emb))
    assert not out.exists() and partials(tmp_path) == []


def test_embeddings_are_checked_against_model_osm_and_grid(encoder, scene, data_dir, tmp_path):
    raster, emb = scene
    other = make_package(tmp_path / "other.safetensors", None, seed=1)
    with pytest.raises(ModelError, match="made by the model 'enc', not by 'other'"):
        run_similar(other, raster, tmp_path / "s.tif", at=[xy(raster, 50, 50)], embeddings=str(emb))
    with pytest.raises(ModelError, match="made by the model"):
        run_cluster(other, raster, tmp_path / "c.tif", k=3, embeddings=str(emb))
    with pytest.raises(InputError, match="from the image alone, but --osm was given"):
        run_similar(encoder, raster, tmp_path / "s.tif", at=[xy(raster, 50, 50)], embeddings=str(emb),
                    osm=[str(data_dir / "Helsinki.osm.pbf")])
    bigger = s2_crop(data_dir, tmp_path / "bigger.tif", size=128)
    with pytest.raises(InputError, match="do not cover bigger.tif"):
        run_cluster(encoder, bigger, tmp_path / "c.tif", k=3, embeddings=str(emb))
    with pytest.raises(InputError, match="not written by 'geolink embed'"):
        run_cluster(encoder, raster, tmp_path / "c.tif", k=3, embeddings=str(raster))
    assert not (tmp_path / "s.tif").exists() and not (tmp_path / "c.tif").exists()


def test_cluster_is_paletted_reproducible_and_refuses_too_many_clusters(encoder, scene, tmp_path):
    raster, emb = scene
    result = run_cluster(encoder, raster, tmp_path / "c.tif", k=4, embeddings=str(emb), seed=3)
    ds = gdal.Open(str(tmp_path / "c.tif"))
    band = ds.GetRasterBand(1)
    values = band.ReadAsArray()
    assert band.GetNoDataValue() == 255  # (GDAL 3.6 loads the .aux.xml's categories only after such a call)
    assert band.GetCategoryNames()[:4] == ["cluster 1", "cluster 2", "cluster 3", "cluster 4"]
    assert band.GetColorTable().GetCount() >= 4
    assert (values[:20, :20] == 255).all() and set(np.unique(values[20:, 20:])) == {0, 1, 2, 3}
    assert 'label="cluster 4"' in (tmp_path / "c.qml").read_text()
    assert set(result["figures"]["class_shares"]) == {"cluster 1", "cluster 2", "cluster 3", "cluster 4"}
    run_cluster(encoder, raster, tmp_path / "again.tif", k=4, seed=3)  # encoded anew: the same map
    assert np.array_equal(gdal.Open(str(tmp_path / "again.tif")).ReadAsArray(), values)
    with pytest.raises(InputError, match="more than the 35 distinct locations"):  # 6 x 6 patches, one nodata
        run_cluster(encoder, raster, tmp_path / "bad.tif", k=40, embeddings=str(emb))
    with pytest.raises(InputError, match="--k must be"):
        run_cluster(encoder, raster, tmp_path / "bad.tif", k=1, embeddings=str(emb))
    assert not (tmp_path / "bad.tif").exists()


def test_similar_with_osm_uses_the_fused_features(encoder, scene, tmp_path):
    from .raster_helpers import osm_geojson

    raster, emb = scene
    osm = osm_geojson(tmp_path / "osm.geojson", raster, [
        ("highway:primary", [(0, 60), (95, 60)]),
        ("building:yes", [(30, 30), (50, 30), (50, 50), (30, 50), (30, 30)]),
        ("natural:water", [(60, 70), (90, 70), (90, 90), (60, 90), (60, 70)])])
    at = [xy(raster, 56, 56)]
    run_similar(encoder, raster, tmp_path / "fused.tif", at=at, osm=[str(osm)])
    fused = gdal.Open(str(tmp_path / "fused.tif"))
    assert fused.GetMetadataItem("GEOLINK_OSM").startswith("osm.geojson")
    run_similar(encoder, raster, tmp_path / "image.tif", at=at, embeddings=str(emb))
    a, b = fused.ReadAsArray(), gdal.Open(str(tmp_path / "image.tif")).ReadAsArray()
    assert np.isfinite(a[20:, 20:]).all() and not np.allclose(a, b, equal_nan=True)
