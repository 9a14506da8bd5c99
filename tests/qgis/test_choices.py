"""The dialog's choices and names in real QGIS (offscreen): which layers it offers, how runs are named, what it says
about the model and about warnings, failures and cancels."""

from __future__ import annotations

import re

from qgis.core import QgsApplication, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsMessageBar

from geolink_qgis import layers, results
from geolink_qgis.ui.main_dialog import GeoLinkDialog

from .geodata import helsinki_osm_near_crop, s2_crop
from .test_ui import wait_for


class Iface:
    """The two things the dialog asks QGIS's interface for: the active layer and a (real) message bar."""

    def __init__(self, active=None):
        self.active = active
        self.bar = QgsMessageBar()

    def activeLayer(self):  # noqa: N802 (QGIS's name)
        return self.active

    def messageBar(self):  # noqa: N802
        return self.bar

    def bar_texts(self):
        return [f"{item.title()}: {item.text()}" for item in self.bar.items()]


def mark_as_output(layer, project, kind=results.CLASSES):
    """What happens to a GeoLink result when Processing loads it: styled, named, grouped, marked."""
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    context = QgsProcessingContext()
    context.setProject(project)
    results.ResultStyler(kind, "08:16:05 Classify land cover", "crop · default · Land cover", {}
                         ).postProcessLayer(layer, context, QgsProcessingFeedback())


def test_raster_box_prefers_the_active_layer_and_never_offers_outputs(qgis_app, data_dir, tmp_path, project):
    a = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "a.tif")), "a crop")
    b = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "b.tif", offset=600)), "b crop")
    made = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "out.tif", offset=400)), "0 output")
    project.addMapLayers([a, b, made])
    mark_as_output(made, project)
    assert results.is_geolink_output(made) and not results.is_geolink_output(a)

    dialog = GeoLinkDialog(project=project, iface=Iface(active=b))
    assert dialog.raster.currentLayer() is b
    offered = [dialog.raster.layer(i) for i in range(dialog.raster.count())]
    assert made not in offered and {a, b} <= set(offered)

    dialog = GeoLinkDialog(project=project, iface=Iface(active=made))  # the active layer is a GeoLink result
    assert dialog.raster.currentLayer() in (a, b)


def test_osm_list_puts_osm_like_layers_first_and_leaves_out_outputs(qgis_app, data_dir, tmp_path, project):
    gpkg = helsinki_osm_near_crop(data_dir, tmp_path / "osm.gpkg", size=32)
    osm = QgsVectorLayer(f"{gpkg}|layername=lines", "Roads (QuickOSM)", "ogr")
    plain = QgsVectorLayer("Polygon?crs=EPSG:32635&field=name:string", "A parcels", "memory")
    zones = QgsVectorLayer("Polygon?crs=EPSG:32635&field=class_name:string", "Zones", "memory")
    project.addMapLayers([plain, osm, zones])
    mark_as_output(zones, project, results.ZONES)
    assert layers.is_osm_like(osm) and not layers.is_osm_like(plain)

    dialog = GeoLinkDialog(project=project, iface=Iface())
    assert dialog.osm_choices() == ["Roads (QuickOSM)", "A parcels"]


def test_two_runs_read_apart_where_the_layers_panel_cuts_names(qgis_app):
    cut = 28  # about what a docked Layers panel shows of a layer inside a group (walkthrough-3-two-runs.png)
    group1, layer1 = results.run_names("Classify land cover", "Land cover", "Sentinel-2 crop", "default", "08:16:05")
    group2, layer2 = results.run_names("Classify land cover", "Land cover", "Sentinel-2 north", "default",
                                       "08:17:40")
    _, layer3 = results.run_names("Classify land cover", "Land cover", "Sentinel-2 crop",
                                  "/data/models/my-polygons.safetensors", "08:18:00")
    assert group1 == "08:16:05 Classify land cover"
    assert layer1 == "Sentinel-2 crop · default · Land cover"
    assert layer3 == "Sentinel-2 crop · my-polygons · Land cover"
    assert len({group1[:cut], group2[:cut]}) == 2 and len({layer1[:cut], layer2[:cut], layer3[:cut]}) == 3
    _, long_name = results.run_names("Classify land cover", "Land cover",
                                     "S2A_MSIL2A_20240612T155821_N0510_R097_T18SVG_20240612T213412", "default", "")
    assert long_name == "S2A_MSIL2A_…213412 · default · Land cover"


def test_the_dialog_describes_the_chosen_model_and_resets_its_status(qgis_app, project):
    dialog = GeoLinkDialog(project=project, iface=Iface())
    dialog.model.setCurrentText("default")
    info = dialog.model_info.text()
    assert "6 classes: built-up, cropland, forest, marsh, sand, water" in info
    assert "demonstration" in info and "Bands red, green, blue" in info
    dialog.model.setCurrentText("no-such-model")
    assert "Not an installed model" in dialog.model_info.text()
    dialog.status.setText("Done: the results are in the Layers panel")
    dialog.task.setCurrentIndex(2)
    assert dialog.status.text() == "Ready."


def test_a_warning_stays_in_the_status_line_and_the_message_bar(qgis_app, data_dir, tmp_path, tiny_models,
                                                                project):
    """Classify with OSM that does not reach the raster: the backend warns, the run still succeeds."""
    raster = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "in.tif", size=32)), "crop")
    gpkg = helsinki_osm_near_crop(data_dir, tmp_path / "osm.gpkg", size=32)
    osm = QgsVectorLayer(f"{gpkg}|layername=lines", "osm lines", "ogr")
    project.addMapLayers([raster, osm])
    iface = Iface(active=raster)
    dialog = GeoLinkDialog(project=project, iface=iface)
    dialog.set_osm_checked([osm])
    dialog.model.setCurrentText(tiny_models["segmentation"])
    dialog.output.setFilePath(str(tmp_path / "classes.tif"))
    dialog.start()
    wait_for(lambda: not dialog.is_running(), timeout=300)
    status = dialog.status.text()
    assert status.startswith("Done") and "no feature in the raster" in status, dialog.log.toPlainText()
    assert any("no feature in the raster" in text for text in iface.bar_texts())
    made = [lyr for lyr in project.mapLayers().values() if results.is_geolink_output(lyr)]
    assert [lyr.name() for lyr in made] == ["crop · tiny-landcover · Land cover"]
    assert dialog.raster.currentLayer() is raster  # the result is not offered as the next input


def test_a_failure_is_said_once_in_qgis_words(qgis_app, data_dir, tmp_path, project):
    from osgeo import gdal

    grey = tmp_path / "grey.tif"
    gdal.Translate(str(grey), str(s2_crop(data_dir, tmp_path / "in.tif", size=32)), bandList=[1])
    raster = QgsRasterLayer(str(grey), "grey")
    project.addMapLayer(raster)
    logged = []
    QgsApplication.messageLog().messageReceived.connect(lambda text, tag, level: logged.append((tag, text)))
    iface = Iface(active=raster)
    dialog = GeoLinkDialog(project=project, iface=iface)
    dialog.start()
    wait_for(lambda: not dialog.is_running(), timeout=300)
    status = dialog.status.text()
    assert status.startswith("<b>Failed:</b> The raster has 1 band(s)") and "“Bands feeding the model”" in status
    assert sum("The raster has 1 band(s)" in text for tag, text in logged if tag == "Processing") == 1  # once
    assert [t for t in iface.bar_texts() if "1 band(s)" in t]
    assert not re.search(r"--\w", status)


def test_trained_and_imported_models_default_to_the_model_folder(qgis_app, tmp_path, monkeypatch):
    """The output box shows the model folder itself (not "[Skip output]" or a temporary file)."""
    import os

    from qgis.core import QgsProcessingContext
    from qgis.gui import QgsGui, QgsProcessingGui
    from qgis.PyQt.QtWidgets import QLineEdit

    from geolink_qgis import settings
    from geolink_qgis.algorithms.base import model_folder_given

    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path / "models"))
    for alg_id in ("finetune", "importcheckpoint"):
        alg = QgsApplication.processingRegistry().createAlgorithmById(f"geolink:{alg_id}")
        param = alg.parameterDefinition("OUTPUT")
        assert param.defaultValue() == str(tmp_path / "models") + os.sep and param.createByDefault()
        wrapper = QgsGui.processingGuiRegistry().createParameterWidgetWrapper(param, QgsProcessingGui.Standard)
        box = wrapper.createWrappedWidget(QgsProcessingContext())
        assert [edit.text() for edit in box.findChildren(QLineEdit)] == [str(tmp_path / "models") + os.sep]
    assert model_folder_given(str(tmp_path / "models") + os.sep) == tmp_path / "models"
    assert model_folder_given(str(tmp_path / "models" / ".safetensors")) == tmp_path / "models"
    assert model_folder_given("") == tmp_path / "models"
    assert model_folder_given(str(tmp_path / "mine.safetensors")) is None


def test_a_trained_model_is_chosen_and_its_report_linked(qgis_app, tmp_path, project):
    dialog = GeoLinkDialog(project=project, iface=Iface())
    dialog.task.setCurrentIndex(3)
    report = tmp_path / "mine.report.html"
    dialog._finished(True, {"OUTPUT": str(tmp_path / "mine.safetensors"), "REPORT": str(report)}, "")
    status = dialog.status.text()
    assert "Trained model “mine”" in status and dialog.model.currentText() == "mine"
    assert f'<a href="file://{report}">Open the training report</a>' in status
    assert dialog.status.openExternalLinks()
