"""Each algorithm end to end in real QGIS with the real backend: small real rasters, real OSM, tiny real models.

Outputs are loaded the way the toolbox loads them (processing.runAndLoadResults) and checked on the map:
renderer, class names in the legend, the run's group, metadata; a cancel leaves nothing behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import (
    QgsCategorizedSymbolRenderer,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsRendererCategory,
    QgsSymbol,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

from . import tiny
from .geodata import helsinki_osm_near_crop, require_task, s2_crop, s2_crop_over_helsinki


def group_of(project: QgsProject, layer) -> str:
    node = project.layerTreeRoot().findLayer(layer.id())
    return node.parent().name() if node is not None and node.parent() is not None else ""


def loaded(project: QgsProject, path: str):
    found = [lyr for lyr in project.mapLayers().values() if lyr.source().split("|")[0] == str(path)]
    assert found, f"{path} was not loaded into the project"
    return found[0]


def test_classify_lands_as_a_named_palette_in_its_group(qgis_app, data_dir, tmp_path, tiny_models, project):
    """Fused with OSM layers, with class probabilities: both land in the run's group, styled."""
    from qgis import processing

    osm = helsinki_osm_near_crop(data_dir, tmp_path / "osm.gpkg", size=64)
    lines = QgsVectorLayer(f"{osm}|layername=lines", "osm lines", "ogr")
    blocks = QgsVectorLayer(f"{osm}|layername=multipolygons", "osm polygons", "ogr")
    out, probs = tmp_path / "land_cover.tif", tmp_path / "probs.tif"
    result = processing.runAndLoadResults("geolink:classify", {
        "INPUT": str(s2_crop_over_helsinki(data_dir, tmp_path / "hel.tif", size=64)), "OSM": [lines, blocks],
        "MODEL": tiny_models["segmentation"], "OUTPUT": str(out), "PROBABILITIES": str(probs), "DEVICE": 2})
    assert Path(result["OUTPUT"]) == out
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize) == (64, 64)
    assert gdal.Open(str(probs)).RasterCount == len(tiny.CLASSES)

    layer = loaded(project, out)
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    legend = [text for text, _ in layer.renderer().legendSymbologyItems()]
    assert legend == tiny.CLASSES
    assert re.fullmatch(r"\d\d:\d\d:\d\d Classify land cover", group_of(project, layer))
    assert layer.name() == "hel · tiny-landcover · Land cover"
    abstract = layer.metadata().abstract()
    assert "model_sha256: " in abstract and "task: classify" in abstract and "osm_lines" in abstract
    prob_layer = loaded(project, probs)
    assert not project.layerTreeRoot().findLayer(prob_layer.id()).itemVisibilityChecked()  # joins switched off
    assert group_of(project, prob_layer) == group_of(project, layer)


def test_embed_writes_features_and_a_pca_preview(qgis_app, data_dir, tmp_path, tiny_models, project):
    from qgis import processing

    require_task("embed")
    out = tmp_path / "emb.tif"
    result = processing.runAndLoadResults("geolink:embed", {
        "INPUT": str(s2_crop(data_dir, tmp_path / "in.tif", size=64)), "MODEL": tiny_models["encoder"],
        "OUTPUT": str(out)})
    assert gdal.Open(str(out)).RasterCount > 3
    preview = loaded(project, result["PREVIEW"])
    assert isinstance(preview.renderer(), QgsMultiBandColorRenderer)
    assert group_of(project, preview) == group_of(project, loaded(project, out))


def test_zones_are_categorized_with_confidence(qgis_app, data_dir, tmp_path, tiny_models, project):
    from qgis import processing

    require_task("zones")
    out = tmp_path / "zones.gpkg"
    processing.runAndLoadResults("geolink:zones", {
        "INPUT": str(s2_crop_over_helsinki(data_dir, tmp_path / "hel.tif", size=64)),
        "OSM_FILE": str(helsinki_osm_near_crop(data_dir, tmp_path / "osm.gpkg", size=64)),
        "MODEL": tiny_models["segmentation"], "OUTPUT": str(out)})
    layer = loaded(project, out)
    assert isinstance(layer, QgsVectorLayer) and layer.featureCount() > 1
    assert isinstance(layer.renderer(), QgsCategorizedSymbolRenderer)
    assert any("confidence" in name.lower() for name in layer.fields().names())
    assert {c.label() for c in layer.renderer().categories()} <= set(tiny.CLASSES) | {""}


def test_finetune_takes_class_colours_from_the_layer_style(qgis_app, data_dir, tmp_path, tiny_models, monkeypatch):
    """... and saves the model in the GeoLink model folder by default, named after the labelled layer."""
    from qgis import processing

    from geolink_qgis import settings
    from geolink_qgis.models import read_card, summary
    from tests.backend.finetune_helpers import labels_in_crop

    require_task("finetune")
    x, y, size = 144, 1264, 96  # a crop holding whole forest and cropland polygons
    raster = tmp_path / "crop.tif"
    gdal.Translate(str(raster), str(data_dir / "s2" / "s2_rgbn.tif"), srcWin=[x, y, size, size])
    labels = QgsVectorLayer(str(labels_in_crop(tmp_path / "labels.geojson", x, y, size)), "labels", "ogr")
    classes = sorted({f["class"] for f in labels.getFeatures()})
    assert len(classes) >= 2
    colours = {name: QColor.fromHsv(60 * i, 200, 200).name() for i, name in enumerate(classes)}
    cats = []
    for name in classes:
        symbol = QgsSymbol.defaultSymbol(labels.geometryType())
        symbol.setColor(QColor(colours[name]))
        cats.append(QgsRendererCategory(name, symbol, name))
    labels.setRenderer(QgsCategorizedSymbolRenderer("class", cats))
    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path / "models"))
    result = processing.run("geolink:finetune", {  # no OUTPUT: the model folder, named after the label layer
        "INPUT": str(raster), "LABELS": labels, "CLASS_FIELD": "class", "MODEL": tiny_models["encoder"],
        "EPOCHS": 1, "HEAD": 2, "MEMBERS": 2, "BATCH_SIZE": 4})
    out = tmp_path / "models" / "labels.safetensors"
    assert result["OUTPUT"] == str(out)
    card = read_card(out)
    assert (card["head"]["decoder"], card["head"]["members"]) == ("upernet", 2)
    assert {c["name"]: c["color"].lower() for c in card["head"]["classes"]} == colours
    assert Path(result["REPORT"]).exists()
    line = summary(card).splitlines()[-1]  # the dialog's line on the model: its own data, its base, its score
    base = card["provenance"]["base_model"]["name"]
    assert line.startswith(f"Trained on “labels.geojson” over “crop.tif” from {base}; held-out mean IoU"), line


def test_import_checkpoint_into_the_model_folder(qgis_app, shared_dir, tmp_path, monkeypatch):
    from qgis import processing

    from geolink_qgis import settings
    from geolink_qgis.models import list_packages

    require_task("import-checkpoint")
    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path / "models"))
    result = processing.run("geolink:importcheckpoint", {
        "INPUT": str(shared_dir / "reference" / "fusion_vit_tiny" / "checkpoint.pth")})
    assert result["OUTPUT"] == str(tmp_path / "models" / "checkpoint.safetensors")
    assert [m["name"] for m in list_packages([str(tmp_path / "models")])] == ["checkpoint"]


def test_cancelling_a_real_classification_leaves_nothing(qgis_app, data_dir, tmp_path, tiny_models, project):
    from qgis import processing

    raster = s2_crop(data_dir, tmp_path / "in.tif", size=256)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda pct: feedback.cancel() if pct > 0 else None)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.runAndLoadResults("geolink:classify", {
            "INPUT": QgsRasterLayer(str(raster), "in"), "MODEL": tiny_models["segmentation"],
            "OUTPUT": str(out_dir / "classes.tif"), "PROBABILITIES": str(out_dir / "probs.tif")}, feedback=feedback)
    assert list(out_dir.iterdir()) == []
    assert not project.mapLayers()


def test_the_dialog_runs_a_classification_into_a_styled_group(qgis_app, data_dir, tmp_path, tiny_models, project):
    """What a user clicks: the GeoLink dialog runs the algorithm in a background task and loads the styled result."""
    from geolink_qgis.ui.main_dialog import GeoLinkDialog

    from .test_ui import wait_for

    raster = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "scene.tif", size=64)), "scene")
    project.addMapLayer(raster)
    dialog = GeoLinkDialog(project=project)
    dialog.raster.setLayer(raster)
    dialog.model.setCurrentText(tiny_models["segmentation"])
    dialog.output.setFilePath(str(tmp_path / "dialog_classes.tif"))
    seen = []
    dialog.progress.valueChanged.connect(seen.append)
    dialog.start()
    assert dialog.is_running() and not dialog.run_button.isEnabled()
    wait_for(lambda: not dialog.is_running(), timeout=300)
    assert dialog.progress.value() == 100 and "Done" in dialog.status.text(), dialog.log.toPlainText()
    assert any(0 < v < 100 for v in seen)
    layer = loaded(project, tmp_path / "dialog_classes.tif")
    assert isinstance(layer.renderer(), QgsPalettedRasterRenderer)
    assert re.fullmatch(r"\d\d:\d\d:\d\d Classify land cover", group_of(project, layer))


def test_classify_inside_a_processing_model(qgis_app, data_dir, tmp_path, tiny_models):
    """The algorithms are ordinary Processing algorithms: a Model Builder model can chain them."""
    from qgis import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("land cover model", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    child = QgsProcessingModelChildAlgorithm("geolink:classify")
    child.setChildId("classify")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("scene")])
    child.addParameterSources("MODEL", [QgsProcessingModelChildParameterSource.fromStaticValue(
        tiny_models["segmentation"])])
    output = QgsProcessingModelOutput("classes")
    output.setChildId("classify")
    output.setChildOutputName("OUTPUT")
    child.setModelOutputs({"classes": output})
    model.addChildAlgorithm(child)
    out = tmp_path / "model_classes.tif"
    result = processing.run(model, {"scene": str(s2_crop(data_dir, tmp_path / "in.tif", size=48)),
                                    "classify:classes": str(out)})
    assert Path(result["classify:classes"]) == out and gdal.Open(str(out)).RasterXSize == 48


def test_batch_classifies_a_folder_and_loads_the_styled_mosaic(qgis_app, data_dir, tmp_path, tiny_models, project):
    """geolink:batch over a folder: one output per raster, a report, the mosaic styled in the project; a rerun
    skips what is up to date."""
    import json

    from qgis import processing

    folder = tmp_path / "tiles"
    folder.mkdir()
    for i, offset in enumerate((500, 700)):
        s2_crop(data_dir, folder / f"tile_{i}.tif", size=48, offset=offset)
    out = tmp_path / "out"
    params = {"TASK": 0, "FOLDER": str(folder), "PATTERN": "*.tif", "MODEL": tiny_models["segmentation"],
              "DEVICE": 2, "OUTPUT": str(out)}
    result = processing.runAndLoadResults("geolink:batch", params)
    report = json.loads(Path(result["REPORT"]).read_text())
    assert (report["done"], report["failed"]) == (2, 0)
    assert sorted(p.name for p in out.glob("*.tif")) == ["tile_0.tif", "tile_1.tif"]
    mosaic = loaded(project, out / "mosaic.vrt")
    assert isinstance(mosaic.renderer(), QgsPalettedRasterRenderer)
    assert [c.label for c in mosaic.renderer().classes()] == tiny.CLASSES
    assert group_of(project, mosaic).endswith("Process a folder of rasters") and mosaic.name().startswith("tiles")
    again = processing.run("geolink:batch", params)
    assert json.loads(Path(again["REPORT"]).read_text())["skipped"] == 2


def test_a_batch_with_a_damaged_raster_says_so_and_loads_the_rest(qgis_app, data_dir, tmp_path, tiny_models,
                                                                  project):
    from qgis import processing

    folder = tmp_path / "tiles"
    folder.mkdir()
    good = s2_crop(data_dir, folder / "tile_0.tif", size=48)
    (folder / "tile_1.tif").write_bytes(good.read_bytes()[:3000])

    class Errors(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.errors = []

        def reportError(self, error, *args, **kwargs):  # noqa: N802 (QGIS names it)
            self.errors.append(error)

    feedback = Errors()
    out = tmp_path / "out"
    processing.runAndLoadResults("geolink:batch", {"TASK": 0, "FOLDER": str(folder), "PATTERN": "*.tif",
                                                   "MODEL": tiny_models["segmentation"], "DEVICE": 2,
                                                   "OUTPUT": str(out)}, feedback=feedback)
    assert any(e.startswith("1 of 2 rasters failed") and "again redoes only those" in e for e in feedback.errors)
    assert [p.name for p in out.glob("*.tif")] == ["tile_0.tif"] and loaded(project, out / "mosaic.vrt")
