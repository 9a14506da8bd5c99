"""Real QGIS, offscreen: one QgsApplication for the session, Processing initialised, the provider registered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("GEOLINK_BACKEND_PYTHON", str(ROOT / ".venv" / "bin" / "python"))

qgis_core = pytest.importorskip("qgis.core", reason="QGIS's Python bindings are not installed")
sys.path.insert(0, str(ROOT / "tools"))
from qgis_session import start_qgis  # noqa: E402


@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory):
    """A QgsApplication with its own throw-away profile, Processing and the GeoLink provider."""
    return start_qgis(config_dir=str(tmp_path_factory.mktemp("qgis-config")))


@pytest.fixture()
def project():
    """The project, empty before and after the test."""
    project = qgis_core.QgsProject.instance()
    project.clear()
    yield project
    project.clear()


@pytest.fixture(scope="session")
def installed_profile(tmp_path_factory):
    """`make package`'s zip installed into a throw-away QGIS profile; returns the env for qgis_process.bin."""
    if not shutil.which("qgis_process.bin"):
        pytest.skip("qgis_process.bin not found")
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--out", str(dist)], check=True)
    config = tmp_path_factory.mktemp("qgis-profiles")
    subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--install-zip",
                    str(dist / "geolink_qgis.zip"), "--profile", str(config / "profiles" / "default")], check=True)
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(config), QT_QPA_PLATFORM="offscreen")
    return env


def qgis_process(env: dict, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["qgis_process.bin", *args], env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Tiny real model packages (random weights) for the end-to-end tests: {"encoder": path, "segmentation": path}."""
    from .geodata import require_task
    from .tiny import packages

    require_task("classify")
    return packages(tmp_path_factory.mktemp("tiny-models"))
