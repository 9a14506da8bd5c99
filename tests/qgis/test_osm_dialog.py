"""The GeoLink dialog's OpenStreetMap tasks in real QGIS: training from OSM (tag map, output in the model folder)
and zones compared with OSM."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer

from geolink_qgis import settings

from .geodata import s2_crop

OSM_STYLE = Path(__file__).resolve().parents[1] / "data" / "osm" / "s2_virginia_osm_style.geojson"


def test_dialog_builds_train_from_osm_and_compare_parameters(qgis_app, data_dir, tmp_path, monkeypatch):
    from geolink_qgis.ui.main_dialog import GeoLinkDialog

    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path))
    project = QgsProject.instance()
    raster = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "in.tif")), "crop")
    osm = QgsVectorLayer(str(OSM_STYLE), "osm", "ogr")
    project.addMapLayers([raster, osm])
    try:
        dialog = GeoLinkDialog()
        dialog.raster.setLayer(raster)
        dialog.set_osm_checked([osm])
        dialog.task.setCurrentIndex(dialog.task.findData("trainfromosm"))
        assert dialog.tag_map.isVisibleTo(dialog) and not dialog.labels.isVisibleTo(dialog)
        assert not dialog.compare_osm.isVisibleTo(dialog)
        dialog.tag_map.setCurrentText("urban-function")
        params = dialog.parameters()
        assert params["TAG_MAP"] == 1 and params["OSM"] == [osm.id()]
        assert Path(params["OUTPUT"]).parent == settings.models_home()
        assert Path(params["OUTPUT"]).name == "crop-urban-function.safetensors"

        dialog.task.setCurrentIndex(dialog.task.findData("zones"))
        assert dialog.compare_osm.isVisibleTo(dialog) and not dialog.tag_map.isVisibleTo(dialog)
        assert "COMPARE_OSM" not in dialog.parameters()
        dialog.compare_osm.setChecked(True)
        assert dialog.parameters()["COMPARE_OSM"] is True
    finally:
        project.removeMapLayers([raster.id(), osm.id()])
