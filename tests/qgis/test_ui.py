"""The dialogs in real QGIS widgets (offscreen): running through a background task, installer errors, models."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsTask

from geolink_qgis import settings
from geolink_qgis.backend_installer import InstallPlan

from .geodata import s2_crop


def wait_for(predicate, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        QgsApplication.processEvents()
        assert time.monotonic() < end, "timed out"
        time.sleep(0.02)


def write_package(path: Path, card: dict) -> Path:
    """A real safetensors file with a GeoLink card in its header (what model packages are)."""
    import numpy as np
    from safetensors.numpy import save_file

    save_file({"w": np.zeros((2, 2), dtype="float32")}, str(path), metadata={"geolink_card": json.dumps(card)})
    return path


def test_runner_runs_in_a_task_and_reports(qgis_app):
    from geolink_qgis.ui.runner import AlgorithmRun

    run = AlgorithmRun("geolink:checkbackend", {})
    seen, done = [], []
    run.message.connect(lambda text, err: seen.append(text))
    run.finished.connect(lambda ok, res, err: done.append((ok, res, err)))
    run.start()
    wait_for(lambda: done)
    ok, res, err = done[0]
    assert ok and "torch" in res["REPORT"] and any("Devices:" in s for s in seen)


def test_dialog_lists_layers_and_models_and_builds_parameters(qgis_app, data_dir, tmp_path, monkeypatch):
    from qgis.core import QgsVectorLayer

    from geolink_qgis.ui.main_dialog import GeoLinkDialog

    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path))
    write_package(tmp_path / "my-landcover.safetensors", {"head": {"type": "segmentation",
                                                                   "classes": [{"name": "water"}]}})
    project = QgsProject.instance()
    raster = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "in.tif")), "crop")
    osm = QgsVectorLayer(f"{data_dir / 'Helsinki.osm.pbf'}|layername=lines", "osm lines", "ogr")
    project.addMapLayers([raster, osm])
    try:
        write_package(tmp_path / "encoder-only.safetensors", {"head": None})
        dialog = GeoLinkDialog()
        models = [dialog.model.itemText(i) for i in range(dialog.model.count())]
        assert models[0] == "default" and "my-landcover" in models
        for task, offered in (("classify", False), ("zones", False), ("embed", True)):  # only suitable models
            dialog.task.setCurrentIndex(dialog.task.findData(task))
            names = [dialog.model.itemText(i) for i in range(dialog.model.count())]
            assert ("encoder-only" in names) == offered and "my-landcover" in names, (task, names)
        dialog.raster.setLayer(raster)
        dialog.set_osm_checked([osm])
        dialog.task.setCurrentIndex(1)
        dialog.model.setCurrentText("my-landcover")
        params = dialog.parameters()
        assert dialog.current_task() == "zones"
        assert params == {"INPUT": raster.id(), "MODEL": "my-landcover", "OSM": [osm.id()]}
    finally:
        project.removeMapLayers([raster.id(), osm.id()])


def test_install_failure_is_explained_in_the_dialog(qgis_app, tmp_path):
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    plan = InstallPlan(venv=tmp_path / "venv", backend_source=tmp_path, base_python=tmp_path / "no-python")
    task = dialog.install(plan, confirm=False)
    wait_for(lambda: dialog.install_button.isEnabled(), timeout=60)
    assert "Installation failed" in dialog.status.text() and "does not run" in dialog.status.text()
    assert task.error and not (tmp_path / "venv").exists()


def test_model_manager_lists_packages_and_shows_cards(qgis_app, tmp_path, monkeypatch):
    from geolink_qgis.ui.models_dialog import ModelsDialog

    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path))
    write_package(tmp_path / "ufz.safetensors", {"architecture": "vit_tiny", "head": {
        "type": "segmentation", "classes": [{"name": "residential"}, {"name": "commercial"}]}})
    (tmp_path / "not-a-model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    dialog = ModelsDialog()
    names = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    assert "ufz" in names and "not-a-model" not in names
    dialog.table.selectRow(names.index("ufz"))
    card_text = dialog.card.toPlainText()
    assert card_text.startswith("Architecture: vit_tiny") and "Classes: residential, commercial" in card_text
    assert '"architecture": "vit_tiny"' in card_text
    assert dialog.table.item(names.index("ufz"), 2).text() == "residential, commercial"
    assert dialog.table.item(names.index("ufz"), 1).text().startswith("classify, zones, embed")
    assert "Can do: classify, zones" in card_text


def test_missing_backend_shows_the_install_banner(qgis_app, tmp_path, monkeypatch):
    from geolink_qgis.ui.main_dialog import GeoLinkDialog

    monkeypatch.setenv("GEOLINK_BACKEND_PYTHON", str(tmp_path / "nowhere" / "python"))
    dialog = GeoLinkDialog()
    assert dialog.backend_banner.isVisibleTo(dialog) and "not installed" in dialog.backend_note.text()
    monkeypatch.undo()
    dialog.refresh()
    assert not dialog.backend_banner.isVisibleTo(dialog)


@pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shebang script stands in for the backend")
def test_dialog_cancel_button_stops_the_run(qgis_app, data_dir, tmp_path, monkeypatch):
    from geolink_qgis.ui.main_dialog import GeoLinkDialog
    from tests.test_worker_client import fake_python

    python = fake_python(tmp_path, """
        import sys, time
        sys.stdin.readline()
        while True:
            print('{"event": "progress", "percent": 7, "message": "busy"}', flush=True)
            time.sleep(0.05)
    """)
    monkeypatch.setenv("GEOLINK_BACKEND_PYTHON", python)
    project = QgsProject.instance()
    raster = QgsRasterLayer(str(s2_crop(data_dir, tmp_path / "in.tif")), "crop")
    project.addMapLayer(raster)
    try:
        dialog = GeoLinkDialog()
        dialog.raster.setLayer(raster)
        dialog.output.setFilePath(str(tmp_path / "out.tif"))
        statuses = []  # what QGIS's task manager (and its "Task failed" notice) sees
        QgsApplication.taskManager().statusChanged.connect(lambda task_id, status: statuses.append(status))
        dialog.start()
        wait_for(lambda: dialog.progress.value() == 7, timeout=60)
        dialog.cancel_button.click()
        wait_for(lambda: not dialog.is_running(), timeout=30)
        assert dialog.status.text() == "Cancelled." and dialog.run_button.isEnabled()
        assert QgsTask.TaskStatus.Complete in statuses and QgsTask.TaskStatus.Terminated not in statuses
        assert not (tmp_path / "out.tif").exists()
    finally:
        project.removeMapLayer(raster.id())
