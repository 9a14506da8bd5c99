"""Install backend inside QGIS (real widgets, offscreen): the confirmation, Stop, and an incomplete environment
recognised by the dialog's banner, the settings, Check backend and the algorithms, each offering Repair."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from qgis.core import QgsProcessingException

from geolink_qgis import settings
from geolink_qgis.backend_installer import InstallPlan, venv_python, write_marker

from .test_ui import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def managed_venv(tmp_path, monkeypatch):
    """The plugin's own environment in a throw-away place, and no interpreter chosen anywhere else."""
    venv = tmp_path / "profile" / "geolink" / "venv"
    monkeypatch.setattr(settings, "default_venv", lambda: venv)
    monkeypatch.delenv("GEOLINK_BACKEND_PYTHON", raising=False)
    settings.set_backend_python("")
    return venv


def test_confirmation_states_size_place_and_what(qgis_app, managed_venv):
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    plan = InstallPlan(venv=managed_venv, backend_source=ROOT / "backend", base_python=Path(sys.executable))
    box = dialog.confirmation(plan)
    assert "Download and install" in box.text()
    text = box.informativeText()
    assert "GB to download" in text and "GB on disk" in text and str(managed_venv) in text
    assert "torch 2." in text and "torchvision 0." in text and "pypi.org" in text and "Stop installation" in text
    assert dialog.install_button.text() == "Install backend…"


def test_stop_ends_the_install_and_removes_the_environment(qgis_app, managed_venv, tmp_path, stand_in_install_size):
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    dialog = SettingsDialog()
    plan = InstallPlan(venv=managed_venv, backend_source=tmp_path, base_python=Path(sys.executable))
    task = dialog.install(plan, confirm=False)
    wait_for(lambda: managed_venv.exists(), timeout=60)  # `python -m venv` is running
    dialog.stop()
    stopped = time.monotonic()
    wait_for(lambda: dialog.install_button.isEnabled(), timeout=60)
    assert time.monotonic() - stopped < 10
    assert task.outcome == "cancelled" and not managed_venv.exists()
    assert dialog.status.text() == "Installation cancelled. The GeoLink backend is not installed yet. Click Install " \
                                   "backend to set it up."


def test_an_incomplete_environment_is_recognised_everywhere(qgis_app, managed_venv, tmp_path):
    from osgeo import gdal
    from qgis import processing

    from geolink_qgis.ui.main_dialog import GeoLinkDialog
    from geolink_qgis.ui.settings_dialog import SettingsDialog

    python = venv_python(managed_venv)  # what a failed (offline) install leaves: an interpreter, no backend
    python.parent.mkdir(parents=True)
    python.symlink_to(sys.executable)
    (managed_venv / "pyvenv.cfg").write_text("")
    write_marker(managed_venv, "installing")

    dialog = GeoLinkDialog()
    assert dialog.backend_banner.isVisibleTo(dialog) and "incomplete" in dialog.backend_note.text()
    assert dialog.install_button.text() == "Repair backend…"
    assert SettingsDialog().install_button.text() == "Repair backend…"
    assert SettingsDialog().status.text().endswith("did not finish. Click Repair backend to finish it.")
    raster = tmp_path / "tiny.tif"
    gdal.GetDriverByName("GTiff").Create(str(raster), 4, 4, 3, gdal.GDT_Byte).FlushCache()
    classify = {"INPUT": str(raster), "OUTPUT": "TEMPORARY_OUTPUT"}
    for alg, params in (("geolink:checkbackend", {}), ("geolink:classify", classify)):
        with pytest.raises(QgsProcessingException, match="incomplete.*click Repair backend"):
            processing.run(alg, params)

    write_marker(managed_venv, "complete")
    dialog.refresh()
    assert not dialog.backend_banner.isVisibleTo(dialog)
