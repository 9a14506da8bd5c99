"""geolink:similar: how alike every place of a raster is to a clicked point, query points or example polygons."""

from __future__ import annotations

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterNumber,
    QgsProcessingParameterPoint,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
    QgsProject,
)

from .. import layers, results
from ..compat import FIELD_ANY, NUMBER_DOUBLE, SOURCE_VECTOR_POINT, SOURCE_VECTOR_POLYGON, add_advanced
from ..i18n import tr
from .base import GeoLinkAlgorithm


def crs_text(crs: QgsCoordinateReferenceSystem) -> str:
    """A CRS the backend (GDAL) reads: its authority id, else its WKT."""
    return crs.authid() or crs.toWkt()


def points_of(layer, crs: QgsCoordinateReferenceSystem) -> list:
    """'X,Y' of every point of a point layer, in `crs`."""
    transform = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance())
    out = []
    for feature in layer.getFeatures():
        geom = feature.geometry()
        if geom.isEmpty():
            continue
        for vertex in geom.vertices():
            p = transform.transform(vertex.x(), vertex.y())
            out.append(f"{p.x()!r},{p.y()!r}")
    return out


class SimilarAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "similar"
    TITLE = "Find similar places"
    HELP = ("Maps how similar every place of the raster is to a query, from the GeoLink embeddings: a point "
            "picked on the map, a layer of query points (their embeddings averaged) or example polygons. The "
            "output is the cosine similarity (-1 to 1, high = alike) at the raster's resolution, styled with a "
            "colour ramp.<br><br>"
            "<b>Example polygons</b> with a <b>class field</b>: one similarity band per class.<br>"
            "<b>Embeddings</b> (optional): the output of 'Extract GeoLink embeddings' for the same raster and "
            "model (and OSM): a new query then needs no encoding and takes a second or two. Without it the "
            "raster is encoded first.<br>"
            "<b>Matching areas</b> (optional): polygons where the similarity is at least the threshold.<br>"
            "OpenStreetMap layers are optional: with them the embeddings are the fused image + OSM ones.")

    MAP_TASK = True
    POINT, POINTS, EXAMPLES, CLASS_FIELD = "POINT", "POINTS", "EXAMPLES", "CLASS_FIELD"
    THRESHOLD, OUTPUT, POLYGONS = "THRESHOLD", "OUTPUT", "POLYGONS"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.addParameter(QgsProcessingParameterPoint(self.POINT, tr("Query point"), optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(self.POINTS, tr("Query points (averaged)"),
                                                              [SOURCE_VECTOR_POINT], optional=True))
        self.addParameter(QgsProcessingParameterFeatureSource(self.EXAMPLES, tr("Example polygons"),
                                                              [SOURCE_VECTOR_POLYGON], optional=True))
        self.addParameter(QgsProcessingParameterField(self.CLASS_FIELD, tr("Class field of the examples (one band "
                                                         "per class)"), parentLayerParameterName=self.EXAMPLES,
                                                      type=FIELD_ANY, optional=True))
        self.add_osm_inputs()
        self.add_model()
        self.add_embeddings_input()
        threshold = QgsProcessingParameterNumber(self.THRESHOLD, tr("Threshold for the matching areas"), NUMBER_DOUBLE,
                                                 defaultValue=0.8, minValue=-1.0, maxValue=1.0)
        add_advanced(threshold)
        self.addParameter(threshold)
        self.add_engine_options()
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, tr("Similarity")))
        self.addParameter(QgsProcessingParameterVectorDestination(
            self.POLYGONS, tr("Matching areas"), SOURCE_VECTOR_POLYGON, optional=True, createByDefault=False))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster_layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        config = self.map_config(parameters, context, feedback)
        out = config["out"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        crs = raster_layer.crs()
        at = []
        if parameters.get(self.POINT):
            p = self.parameterAsPoint(parameters, self.POINT, context, crs)
            at.append(f"{p.x()!r},{p.y()!r}")
        if parameters.get(self.POINTS):
            at += points_of(self.parameterAsVectorLayer(parameters, self.POINTS, context), crs)
        examples = self.parameterAsVectorLayer(parameters, self.EXAMPLES, context) \
            if parameters.get(self.EXAMPLES) else None
        if bool(at) == (examples is not None):
            raise QgsProcessingException(tr("Give the query as a point, query points or example polygons "
                                            "(one of them)."))
        if at:
            config.update(at=at, at_crs=crs_text(crs))
        else:
            config["examples"] = layers.vector_path(examples, feedback)
            field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
            if field:
                config["class_field"] = field
        config.update(self.embeddings_config(parameters, context))
        polygons = self.parameterAsOutputLayer(parameters, self.POLYGONS, context) \
            if parameters.get(self.POLYGONS) else None
        if polygons:
            config.update(polygons=polygons, threshold=self.parameterAsDouble(parameters, self.THRESHOLD, context))
        self.run_backend("similar", config, feedback, outputs=[p for p in (out, polygons) if p])
        self.style_output(out, results.SIMILARITY, tr("Similarity"))
        if polygons:
            self.style_output(polygons, results.ZONES, tr("Matching areas"))
        return {self.OUTPUT: out, self.POLYGONS: polygons}
