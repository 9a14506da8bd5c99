"""The packaged plugin, installed from its zip into a throw-away profile, driven through qgis_process.bin."""

from __future__ import annotations

import json

from .conftest import qgis_process


def test_provider_listed_from_zip_install(installed_profile):
    out = qgis_process(installed_profile, "list")
    assert out.returncode == 0, out.stderr
    assert "geolink:checkbackend" in out.stdout


def test_checkbackend_runs_from_qgis_process(installed_profile):
    out = qgis_process(installed_profile, "--json", "run", "geolink:checkbackend")
    assert out.returncode == 0, out.stderr + out.stdout
    payload = json.loads(out.stdout[out.stdout.index("{"):])
    assert "torch" in payload["results"]["REPORT"]
