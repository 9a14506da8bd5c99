"""geolink:cluster: an unsupervised map: k-means clusters of the GeoLink embeddings, as a paletted raster."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .. import results
from ..compat import NUMBER_INTEGER
from ..i18n import tr
from .base import GeoLinkAlgorithm


class ClusterAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "cluster"
    TITLE = "Cluster embeddings (unsupervised map)"
    HELP = ("Groups the places of the raster into K clusters of alike GeoLink embeddings (k-means), without any "
            "labels, and writes a paletted raster with the legend 'cluster 1..K' (cluster 1 the largest). The "
            "same inputs and seed give the same map.<br><br>"
            "<b>Embeddings</b> (optional): the output of 'Extract GeoLink embeddings' for the same raster and "
            "model (and OSM), so no encoding is needed. Without it the raster is encoded first.<br>"
            "OpenStreetMap layers are optional: with them the embeddings are the fused image + OSM ones.<br>"
            "<b>Advanced</b>: the random seed and the number of feature vectors the k-means is fitted on.")

    MAP_TASK = True
    K, SEED, SAMPLE, OUTPUT = "K", "SEED", "SAMPLE", "OUTPUT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.addParameter(QgsProcessingParameterNumber(self.K, tr("Number of clusters"), NUMBER_INTEGER, defaultValue=8,
                                                       minValue=2, maxValue=254))
        self.add_osm_inputs()
        self.add_model()
        self.add_embeddings_input()
        self.add_advanced_parameters(
            QgsProcessingParameterNumber(self.SEED, tr("Random seed"), NUMBER_INTEGER, defaultValue=0,
                                         minValue=0),
            QgsProcessingParameterNumber(self.SAMPLE, tr("Feature vectors to fit on"), NUMBER_INTEGER,
                                         defaultValue=20000, minValue=2))
        self.add_engine_options()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Clusters")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        config = self.map_config(parameters, context, feedback)
        out = config["out"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        config["k"] = self.parameterAsInt(parameters, self.K, context)
        for param, key in ((self.SEED, "seed"), (self.SAMPLE, "sample")):
            if parameters.get(param) not in (None, ""):
                config[key] = self.parameterAsInt(parameters, param, context)
        config.update(self.embeddings_config(parameters, context))
        self.run_backend("cluster", config, feedback, outputs=[out])
        self.style_output(out, results.CLASSES, tr("Clusters"))
        return {self.OUTPUT: out}
