"""geolink:similar and geolink:cluster in real QGIS with the real backend: styled outputs, reused embeddings,
and bad queries reported as Processing errors in words."""

from __future__ import annotations

import pytest
from osgeo import gdal
from qgis.core import (
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)

from .geodata import require_task, s2_crop


@pytest.fixture()
def scene(qgis_app, data_dir, tmp_path, tiny_models):
    """A 64 px real S2 crop and its embeddings by the tiny encoder (through geolink:embed)."""
    from qgis import processing

    require_task("similar")
    raster = s2_crop(data_dir, tmp_path / "s2.tif", size=64)
    processing.run("geolink:embed", {"INPUT": str(raster), "MODEL": tiny_models["encoder"],
                                     "OUTPUT": str(tmp_path / "emb.tif"), "DEVICE": 2})
    return raster, tmp_path / "emb.tif"


def point_at(raster, col: float, row: float) -> str:
    gt = gdal.Open(str(raster)).GetGeoTransform()
    return f"{gt[0] + col * gt[1]},{gt[3] + row * gt[5]} [EPSG:32618]"


def loaded(project, path):
    found = [lyr for lyr in project.mapLayers().values() if lyr.source().split("|")[0] == str(path)]
    assert found, f"{path} was not loaded"
    return found[0]


def test_similar_to_a_point_is_a_colour_ramp_with_matching_areas(scene, tiny_models, tmp_path, project):
    from qgis import processing

    raster, emb = scene
    out, polys = tmp_path / "sim.tif", tmp_path / "matches.gpkg"
    processing.runAndLoadResults("geolink:similar", {
        "INPUT": str(raster), "POINT": point_at(raster, 40, 24), "MODEL": tiny_models["encoder"],
        "EMBEDDINGS": str(emb), "THRESHOLD": 0.5, "OUTPUT": str(out), "POLYGONS": str(polys), "DEVICE": 2})
    layer = loaded(project, out)
    assert isinstance(layer.renderer(), QgsSingleBandPseudoColorRenderer)
    assert layer.renderer().shader().rasterShaderFunction().colorRampItemList()
    matches = loaded(project, polys)
    assert isinstance(matches, QgsVectorLayer) and matches.featureCount() > 0
    assert {f["class"] for f in matches.getFeatures()} == {"query"}
    assert "task: similar" in layer.metadata().abstract()


def test_cluster_lands_as_a_named_palette(scene, tiny_models, tmp_path, project):
    from qgis import processing

    raster, emb = scene
    out = tmp_path / "clusters.tif"
    processing.runAndLoadResults("geolink:cluster", {"INPUT": str(raster), "K": 3, "MODEL": tiny_models["encoder"],
                                                     "EMBEDDINGS": str(emb), "OUTPUT": str(out), "DEVICE": 2})
    layer = loaded(project, out)
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert [text for text, _ in layer.renderer().legendSymbologyItems()] == ["cluster 1", "cluster 2", "cluster 3"]


def test_bad_queries_are_processing_errors_in_words(scene, tiny_models, tmp_path):
    from qgis import processing

    raster, emb = scene
    with pytest.raises(QgsProcessingException, match="outside the raster"):
        processing.run("geolink:similar", {"INPUT": str(raster), "POINT": point_at(raster, 500, 10),
                                           "MODEL": tiny_models["encoder"], "EMBEDDINGS": str(emb),
                                           "OUTPUT": str(tmp_path / "a.tif"), "DEVICE": 2})
    with pytest.raises(QgsProcessingException, match="a point, query points or example polygons"):
        processing.run("geolink:similar", {"INPUT": str(raster), "MODEL": tiny_models["encoder"],
                                           "OUTPUT": str(tmp_path / "a.tif"), "DEVICE": 2})
    with pytest.raises(QgsProcessingException, match="made by the model 'tiny-encoder', not by 'tiny-landcover'"):
        processing.run("geolink:cluster", {"INPUT": str(raster), "K": 3, "MODEL": tiny_models["segmentation"],
                                           "EMBEDDINGS": str(emb), "OUTPUT": str(tmp_path / "c.tif"),
                                           "DEVICE": 2})
    assert not (tmp_path / "a.tif").exists() and not (tmp_path / "c.tif").exists()
