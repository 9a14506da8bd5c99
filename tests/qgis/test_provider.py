"""The GeoLink provider in real QGIS: registration, algorithm ids, and the backend check end to end."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingException

FIXED_IDS = {"classify", "zones", "embed", "batch", "similar", "cluster", "finetune", "trainfromosm",
             "importcheckpoint", "checkbackend"}


def test_provider_registered(qgis_app):
    provider = QgsApplication.processingRegistry().providerById("geolink")
    assert provider is not None and provider.name() == "GeoLink"
    ids = {alg.name() for alg in provider.algorithms()}
    assert "checkbackend" in ids and ids <= FIXED_IDS
    for alg in provider.algorithms():
        assert alg.displayName() and len(alg.shortHelpString()) > 40
        if alg.name() in ("classify", "zones", "embed", "finetune"):  # say plainly what 'default' is
            assert "demonstration model" in alg.shortHelpString(), alg.name()


def test_checkbackend_through_processing(qgis_app):
    from qgis import processing

    result = processing.run("geolink:checkbackend", {})
    report = result["REPORT"]
    assert "torch 2." in report and "gdal" in report.lower() and "Devices:" in report


def test_missing_backend_is_a_processing_error_not_a_crash(qgis_app, monkeypatch, tmp_path):
    from qgis import processing

    monkeypatch.setenv("GEOLINK_BACKEND_PYTHON", str(tmp_path / "missing" / "python"))
    with pytest.raises(QgsProcessingException, match="not installed yet.*click Install backend"):
        processing.run("geolink:checkbackend", {})
