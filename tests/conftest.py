"""Shared fixtures: where the reference data and the fetched sample data live."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GEOLINK_SHARED", ROOT.parent / "shared"))
DATA = Path(os.environ.get("GEOLINK_DATA", ROOT / ".cache" / "data"))


def pytest_report_header(config) -> str:
    """The versions the suite ran on, at the top of every run (CI logs and `make test-qgis` report them)."""
    parts = [f"Python {platform.python_version()}"]
    try:
        from qgis.core import Qgis

        parts.append(f"QGIS {Qgis.version()}")
    except ImportError:
        parts.append("QGIS not importable")
    try:
        from osgeo import gdal

        parts.append(f"GDAL {gdal.__version__}")
    except ImportError:
        pass
    return "geolink: " + ", ".join(parts)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (the paper's examples and the reference oracle); skips the test when absent."""
    if not (SHARED / "README.md").exists():
        pytest.skip(f"reference data not found at {SHARED} (set GEOLINK_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Real rasters and OSM fetched from PyPI packages by `make data`."""
    if not (DATA / "READY").exists():
        pytest.skip(f"sample data missing in {DATA}: run `make data`")
    return DATA


@pytest.fixture
def small_disk(tmp_path):
    """mount(size, read_only=False) -> a folder on a fresh tmpfs of that size, e.g. "64k", for disk-full and
    read-only cases. Needs root (the CI runs the tests as root): skips with the reason otherwise or when the
    mount fails; every mount is undone after the test."""
    import subprocess

    mounted = []

    def mount(size: str = "64k", read_only: bool = False) -> Path:
        if os.name != "posix" or os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs needs root (the CI runs the tests as root)")
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                              text=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def stand_in_install_size(monkeypatch):
    """The backend installer's free-space check sized for tests' stand-in packages (kilobytes), not for PyTorch's
    gigabytes, so an install test does not depend on this disk's free space."""
    from geolink_qgis import backend_installer

    monkeypatch.setattr(backend_installer, "size_estimate", lambda *args: (0.001, 0.001))
