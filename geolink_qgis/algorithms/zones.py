"""geolink:zones: zone polygons bounded by the OSM street network, each with its class and confidence."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from .. import results
from ..compat import NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_VECTOR_POLYGON
from ..i18n import tr
from .base import GeoLinkAlgorithm


class ZonesAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "zones"
    USES_MODEL = True
    TITLE = "Map urban function zones"
    HELP = ("Cuts the raster's extent into zones along the OpenStreetMap ways (roads, railways, waterways; where "
            "there are none, into regions of the same predicted class), classifies the pixels with a GeoLink "
            "model fused with the OSM entities, and gives each zone its majority class, the share of each class "
            "and a confidence, in the raster's CRS. The zones are loaded categorized by class; the shares and "
            "the confidence are in the attribute table.<br><br>"
            "OpenStreetMap data is required: OSM layers (e.g. from QuickOSM) or an .osm/.pbf file covering the "
            "raster. With a model fine-tuned on urban function classes (residential, commercial, industrial, "
            "...) this maps urban function zones; with a land-cover model it gives land-use parcels.<br>"
            "<b>Attributes</b>: class, class_name, color, share_&lt;class&gt; for every class, confidence (the "
            "mean top probability of the zone's pixels), majority share, pixel count and area.<br>"
            "<b>Compare with OSM</b>: each zone also gets the class OSM's tags give it (osm_class, through the tag "
            "map the model was trained with, e.g. by 'Train classifier from OpenStreetMap'), the share of the zone "
            "OSM classes (osm_share) and osm_review: 'missing in OSM' (OSM has no land use there), 'agrees' or "
            "'disagrees'. The layer is styled so the two review categories stand out: a review queue for mappers.")

    MAP_TASK = True
    OUTPUT, MIN_AREA, SIEVE, COMPARE_OSM, TAG_MAP = "OUTPUT", "MIN_AREA", "SIEVE", "COMPARE_OSM", "TAG_MAP"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.add_osm_inputs(required=True)
        self.add_model()
        self.addParameter(QgsProcessingParameterBoolean(
            self.COMPARE_OSM, tr("Compare with OSM (missing in OSM / agrees / disagrees)"), defaultValue=False))
        self.add_advanced_parameters(
            QgsProcessingParameterString(self.TAG_MAP, tr("Tag map for the comparison: landcover, urban-"
                                                          "function or a .json (empty: the model's own)"),
                                         defaultValue="", optional=True),
            QgsProcessingParameterNumber(self.MIN_AREA, tr("Smallest zone in m² (0: 16 pixels)"),
                                         NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterNumber(self.SIEVE, tr("Without OSM ways: merge class regions smaller than "
                                                        "this many pixels (0: 64)"), NUMBER_INTEGER,
                                         defaultValue=0, minValue=0))
        self.add_engine_options()
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, tr("Zones"), SOURCE_VECTOR_POLYGON))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        config = self.map_config(parameters, context, feedback, osm_required=True)
        out = config["out"] = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        if not out.lower().endswith(".gpkg"):
            raise QgsProcessingException(tr("Zones are written as a GeoPackage; choose a .gpkg output, not {path}.")
                                         .format(path=out))
        for param, key, cast in ((self.MIN_AREA, "min_area", float), (self.SIEVE, "sieve", int)):
            value = self.parameterAsDouble(parameters, param, context) if parameters.get(param) else 0
            if value:
                config[key] = cast(value)
        if parameters.get(self.COMPARE_OSM) and self.parameterAsBoolean(parameters, self.COMPARE_OSM, context):
            config["compare_osm"] = True
            tag_map = self.parameterAsString(parameters, self.TAG_MAP, context).strip() \
                if parameters.get(self.TAG_MAP) else ""
            if tag_map:
                config["tag_map"] = tag_map
        result = self.run_backend("zones", config, feedback, outputs=[out])
        review = (result.get("figures") or {}).get("osm_review")
        if review:
            feedback.pushInfo("OSM review: " + ", ".join(f"{n} zones {k}" for k, n in review.items()))
        self.style_output(out, results.ZONES, tr("Zones"))
        return {self.OUTPUT: out}

