"""geolink:classify: a land-cover map from imagery (and OSM), as a paletted raster with class names."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterRasterDestination

from .. import results
from ..i18n import tr
from .base import GeoLinkAlgorithm


class ClassifyAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "classify"
    USES_MODEL = True
    TITLE = "Classify land cover"
    HELP = ("Classifies every pixel of the input raster with a GeoLink model that has a segmentation head, and "
            "writes a land-cover map: a GeoTIFF with a colour table and class names, loaded as a paletted layer. "
            "OpenStreetMap layers or an .osm/.pbf file are optional: with them the model fuses the imagery with "
            "the OSM entities of each tile; without them it uses the image alone.<br><br>"
            "<b>Model</b>: 'default' is the model shipped with the plugin; give the name of an installed model "
            "(see the model manager) or the path of a .safetensors package, e.g. one trained with "
            "'Train classifier from labelled polygons'.<br>"
            "<b>Class probabilities</b> (optional): a multi-band raster with one probability band per class.<br>"
            "<b>Advanced</b>: device (the GeoLink settings' choice by default), tile size, overlap between tiles "
            "(blended, so no seams show), batch size, ground sample distance, a processing extent (needed for "
            "web layers, which are downloaded at that extent and resolution first), and a cap on the OSM entities "
            "per tile that enter the fusion (dense city tiles hold thousands, and the fusion's time grows with the "
            "square of their number).")

    MAP_TASK = True
    OUTPUT, PROBABILITIES = "OUTPUT", "PROBABILITIES"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.add_osm_inputs()
        self.add_model()
        self.add_engine_options()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Land cover")))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.PROBABILITIES, tr("Class probabilities"), optional=True, createByDefault=False))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        config = self.map_config(parameters, context, feedback)
        out = config["out"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        probs = self.parameterAsOutputLayer(parameters, self.PROBABILITIES, context) \
            if parameters.get(self.PROBABILITIES) else None
        if probs:
            config["probabilities"] = probs
        self.run_backend("classify", config, feedback, outputs=[p for p in (out, probs) if p])
        self.style_output(out, results.CLASSES, tr("Land cover"))
        if probs:
            self.style_output(probs, results.PROBABILITIES, tr("Class probabilities"), visible=False)
        return {self.OUTPUT: out, self.PROBABILITIES: probs}
