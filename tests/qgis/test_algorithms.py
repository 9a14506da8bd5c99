"""The six algorithms as Processing sees them, and what happens when the worker dies or the user cancels."""

from __future__ import annotations

import sys
import time

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
)

from geolink_qgis.compat import FLAG_ADVANCED
from tests.test_worker_client import fake_python

from .geodata import s2_crop

ENGINE = {"DEVICE", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "GSD", "EXTENT"}
MAP_TASKS = ["classify", "zones", "embed", "similar", "cluster"]
posix_only = pytest.mark.skipif(sys.platform == "win32", reason="a POSIX shebang script stands in for the backend")


def alg(alg_id: str):
    found = QgsApplication.processingRegistry().createAlgorithmById(f"geolink:{alg_id}")
    assert found is not None, alg_id
    return found


@pytest.mark.parametrize("alg_id", MAP_TASKS + ["finetune"])
def test_map_algorithms_default_everything_but_input_and_output(qgis_app, alg_id):
    a = alg(alg_id)
    names = {p.name() for p in a.parameterDefinitions()}
    assert ENGINE <= names
    for p in a.parameterDefinitions():
        if p.name() in ENGINE:
            assert p.flags() & FLAG_ADVANCED, p.name()
    model = a.parameterDefinition("MODEL")
    assert model.defaultValue() == "default"
    mandatory = {p.name() for p in a.parameterDefinitions()
                 if not (p.flags() & p.FlagOptional) and p.defaultValue() is None and not p.isDestination()}
    expected = {"classify": {"INPUT"}, "embed": {"INPUT"}, "zones": {"INPUT"}, "similar": {"INPUT"},
                "cluster": {"INPUT"}, "finetune": {"INPUT", "LABELS", "CLASS_FIELD"}}[alg_id]
    assert mandatory == expected
    assert len(a.shortHelpString()) > 200
    cap = a.parameterDefinition("OSM_MAX_NODES")
    assert (cap is not None) == (alg_id in MAP_TASKS)
    if cap is not None:
        assert cap.flags() & FLAG_ADVANCED and cap.defaultValue() == 0


def test_osm_entity_cap_reaches_the_backend_config_only_when_set(qgis_app):
    a, context = alg("classify"), QgsProcessingContext()
    assert a.engine_config({"OSM_MAX_NODES": 64}, context)["osm_max_nodes"] == 64
    assert "osm_max_nodes" not in a.engine_config({"OSM_MAX_NODES": 0}, context)
    assert "osm_max_nodes" not in a.engine_config({}, context)


def test_classify_accepts_input_and_output_alone(qgis_app, data_dir, tmp_path):
    a, context = alg("classify"), QgsProcessingContext()
    parameters = {"INPUT": str(s2_crop(data_dir, tmp_path / "in.tif")), "OUTPUT": str(tmp_path / "out.tif")}
    ok, msg = a.checkParameterValues(parameters, context)
    assert ok, msg
    assert not a.checkParameterValues({"OUTPUT": str(tmp_path / "out.tif")}, context)[0]  # the input is needed
    sent = a.engine_config(parameters, context)  # unset advanced options are left to the backend's defaults
    assert not set(sent) & {"tile_size", "overlap", "batch_size", "gsd", "osm_max_nodes", "bands", "native"}


def test_zones_without_osm_is_refused_in_words(qgis_app, data_dir, tmp_path):
    from qgis import processing

    with pytest.raises(QgsProcessingException, match="needs OpenStreetMap data"):
        processing.run("geolink:zones", {"INPUT": str(s2_crop(data_dir, tmp_path / "in.tif")),
                                         "OUTPUT": str(tmp_path / "zones.gpkg")})


@posix_only
def test_a_dead_worker_is_reported_and_qgis_keeps_running(qgis_app, data_dir, tmp_path, monkeypatch):
    from qgis import processing

    python = fake_python(tmp_path, """
        import os, signal, sys
        sys.stdin.readline()
        print('{"event": "progress", "percent": 10, "message": "tiling"}', flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    monkeypatch.setenv("GEOLINK_BACKEND_PYTHON", python)
    out = tmp_path / "classes.tif"
    with pytest.raises(QgsProcessingException, match="killed .*out of memory"):
        processing.run("geolink:classify", {"INPUT": str(s2_crop(data_dir, tmp_path / "in.tif")), "OUTPUT": str(out)})
    assert not out.exists()
    monkeypatch.undo()
    assert "torch" in processing.run("geolink:checkbackend", {})["REPORT"]  # the same QGIS process carries on


@posix_only
def test_cancel_from_a_progress_callback_leaves_nothing_behind(qgis_app, data_dir, tmp_path, monkeypatch):
    from qgis import processing

    out = tmp_path / "classes.tif"
    python = fake_python(tmp_path, f"""
        import sys, time
        sys.stdin.readline()
        open({str(tmp_path / "classes.partial-4242.tif")!r}, "w").write("half a raster")
        while True:  # ignores the cancel request, like a worker stuck in a long call
            print('{{"event": "progress", "percent": 3, "message": "busy"}}', flush=True)
            time.sleep(0.05)
    """)
    monkeypatch.setenv("GEOLINK_BACKEND_PYTHON", python)
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda pct: feedback.cancel())
    project = QgsProject.instance()
    before = set(project.mapLayers())
    t0 = time.monotonic()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.runAndLoadResults("geolink:classify", {"INPUT": QgsRasterLayer(
            str(s2_crop(data_dir, tmp_path / "in.tif")), "in"), "OUTPUT": str(out)}, feedback=feedback)
    assert time.monotonic() - t0 < 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fake_python", "in.tif"]
    assert set(project.mapLayers()) == before
