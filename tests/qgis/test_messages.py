"""Backend messages in QGIS's words: the options and tasks they name read as parameter labels and algorithm names."""

from __future__ import annotations

import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException

from geolink_qgis.algorithms import ALGORITHMS
from geolink_qgis.algorithms.words import ELSEWHERE, ProcessingWords, short_label
from tests.backend.test_error_words import _marker_keys

from .geodata import s2_crop

CLI_ONLY = {"pairs", "init", "image_size", "bounds", "bounds_crs", "augment"}  # pretrain, osm-graph, CLI-only knobs


def alg(alg_id: str):
    return QgsApplication.processingRegistry().createAlgorithmById(f"geolink:{alg_id}")


def test_options_read_as_parameter_labels_and_tasks_as_algorithm_names(qgis_app):
    words = ProcessingWords(alg("classify"))
    assert words.option("bands", None) == "“Bands feeding the model” (Advanced Parameters)"
    assert words.option("bands", "1,1,1") == "“Bands feeding the model” = 1,1,1"
    assert words.option("osm", None) == "“OpenStreetMap layers” or “OpenStreetMap file”"
    assert words.option("raster", None) == "“Input raster”"
    assert words.option("model", "default") == "“Model” = default"
    assert words.command("finetune") == "“Train classifier from labelled polygons”"
    assert words.command("import-checkpoint") == "“Import GeoLink checkpoint”"
    assert words.command("doctor") == "“Check GeoLink backend”"
    assert "geolink pretrain" in words.command("pretrain")
    assert short_label("Tile size in pixels (0: the model's)") == "Tile size in pixels"


def test_every_option_a_backend_message_names_has_qgis_words(qgis_app):
    """A message naming an option QGIS has no parameter or setting for would send the user looking for it."""
    known = set(ELSEWHERE) | CLI_ONLY
    for cls in ALGORITHMS:
        a = alg(cls.ALG_ID)
        known |= {key for key, _ in _marker_keys()[0] if ProcessingWords(a)._parameters(key)}
    missing = {(key, where) for key, where in _marker_keys()[0] if key not in known}
    assert not missing, f"add a parameter, an ELSEWHERE entry or a CLI_ONLY entry for {missing}"


def test_a_grey_raster_is_refused_with_the_parameter_to_set(qgis_app, data_dir, tmp_path):
    from qgis import processing

    grey = tmp_path / "grey.tif"
    gdal.Translate(str(grey), str(s2_crop(data_dir, tmp_path / "in.tif", size=64)), bandList=[1])
    with pytest.raises(QgsProcessingException) as err:
        processing.run("geolink:classify", {"INPUT": str(grey), "OUTPUT": str(tmp_path / "out.tif")})
    text = str(err.value)
    assert "Map bands with “Bands feeding the model” (Advanced Parameters)" in text
    assert "“Bands feeding the model” = 1,1,1" in text
    assert "--" not in text and "{opt" not in text
    assert not (tmp_path / "out.tif").exists()
