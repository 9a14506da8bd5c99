"""geolink:embed: GeoLink features as a multi-band raster, with a 3-band PCA preview."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .. import results
from ..compat import NUMBER_INTEGER, add_advanced
from ..i18n import tr
from .base import GeoLinkAlgorithm

PREVIEW_OUTPUT = "preview"  # the key of the PCA preview among the backend's outputs


class EmbedAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "embed"
    USES_MODEL = True
    TITLE = "Extract GeoLink embeddings"
    HELP = ("Runs the GeoLink encoder over the input raster and writes its features as a multi-band raster at "
            "patch resolution (one band per feature channel, one pixel per 16 x 16 image pixels), plus a 3-band "
            "PCA preview that shows similar places in similar colours. With OpenStreetMap layers or an OSM file "
            "the features are the fused image + OSM ones; without, the image encoder's.<br><br>"
            "Use the embeddings for clustering, similarity search or your own classifier (e.g. the "
            "'Random forest' algorithms of other providers).<br>"
            "<b>Encoder block</b> (advanced): which transformer block's output to write, counted from 1 (0: the "
            "model's last, fused output).")

    MAP_TASK = True
    OUTPUT, PREVIEW, LAYER = "OUTPUT", "PREVIEW", "LAYER"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.add_osm_inputs()
        self.add_model()
        layer = QgsProcessingParameterNumber(self.LAYER, tr("Encoder block, from 1 (0: the last, fused output)"),
                                             NUMBER_INTEGER, defaultValue=0, minValue=0)
        add_advanced(layer)
        self.addParameter(layer)
        self.add_engine_options()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Embeddings")))
        self.addOutput(QgsProcessingOutputRasterLayer(self.PREVIEW, tr("PCA preview")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        config = self.map_config(parameters, context, feedback)
        out = config["out"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        layer = self.parameterAsInt(parameters, self.LAYER, context) if parameters.get(self.LAYER) else 0
        if layer:
            config["layer"] = layer
        result = self.run_backend("embed", config, feedback, outputs=[out])
        preview = str((result.get("outputs") or {}).get(PREVIEW_OUTPUT) or "")
        self.style_output(out, results.EMBEDDINGS, tr("Embeddings"), visible=False)
        if preview:
            self.style_output(preview, results.PREVIEW, tr("Embeddings (PCA preview)"), declared=False)
        return {self.OUTPUT: out, self.PREVIEW: preview}

