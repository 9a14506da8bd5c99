"""geolink:trainfromosm: train a classifier from OpenStreetMap polygons (their tags are the labels), no drawing."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
)

from ..compat import FILE_BEHAVIOR_FILE, NUMBER_DOUBLE
from ..i18n import tr
from .finetune import FinetuneAlgorithm

BUILT_IN_TAG_MAPS = ["landcover", "urban-function"]  # the backend's (geolink.osm.tagmap.BUILT_IN), in its order


class TrainFromOsmAlgorithm(FinetuneAlgorithm):
    ALG_ID = "trainfromosm"
    TITLE = "Train classifier from OpenStreetMap"
    HELP = ("Trains a classifier for your imagery without drawing anything: the OpenStreetMap polygons over the "
            "raster are the labels, their tags turned into classes by a <b>tag map</b>. Then use the new model in "
            "'Classify land cover', or in 'Map urban function zones' (with the urban-function tag map this is "
            "urban-function-zone mapping; tick 'Compare with OSM' there to find where OSM's land use is missing "
            "or may be outdated).<br><br>"
            "<b>OpenStreetMap</b>: layers (e.g. from QuickOSM, Overpass exports, Geofabrik shapefiles) or an "
            ".osm/.pbf file covering the raster; only polygons are labels.<br>"
            "<b>Tag map</b>: <i>landcover</i> (water, wetland, bare, built-up, forest, cropland, grassland) or "
            "<i>urban-function</i> (water, transportation, institutional, commercial, industrial, residential, "
            "green space, farmland, undeveloped), or a JSON file: "
            "{\"classes\": [{\"name\": \"water\", \"color\": \"#1f78b4\", \"tags\": [\"natural=water\", "
            "\"water=*\"]}, ...]}. The first class whose tags a polygon has wins.<br>"
            "<b>OSM is noisy</b>: polygon edges lose the edge margin (they are drawn loosely), smaller polygons win "
            "inside larger ones, untagged land is not trained on, classes are sampled in balance, and validation "
            "is held out by polygon piece. The report gives each class's label area and what was left out, and "
            "why.<br>"
            "<b>Output</b>: a model package (.safetensors) and its training report.")

    TAG_MAP, TAG_MAP_FILE, EDGE_MARGIN, FUSE_OSM = "TAG_MAP", "TAG_MAP_FILE", "EDGE_MARGIN", "FUSE_OSM"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.add_osm_inputs(required=True)
        tag_maps = BUILT_IN_TAG_MAPS + [tr("From the tag map file below")]
        self.addParameter(QgsProcessingParameterEnum(self.TAG_MAP, tr("Tag map (OSM tags -> classes)"), tag_maps,
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.TAG_MAP_FILE, tr("Tag map file (JSON)"), FILE_BEHAVIOR_FILE,
                                                     fileFilter=tr("Tag map (*.json)"), optional=True))
        self.add_model(description=tr("Base model (a name or a .safetensors path)"))
        self.add_advanced_parameters(
            QgsProcessingParameterNumber(self.EDGE_MARGIN, tr("Edge margin taken off OSM polygons in m "
                                            "(-1: one pixel, at least 2 m)"), NUMBER_DOUBLE, defaultValue=-1.0,
                                         minValue=-1.0),
            QgsProcessingParameterBoolean(self.FUSE_OSM, tr("Also feed the OSM to the model (OSM-aware base "
                                             "models)"), defaultValue=False))
        self.add_training_options(split_field=False)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster = self.raster_input(parameters, context, feedback)
        osm = self.osm_inputs(parameters, context, feedback, required=True)
        choice = self.parameterAsEnum(parameters, self.TAG_MAP, context)
        tag_map_file = self.parameterAsFile(parameters, self.TAG_MAP_FILE, context) \
            if parameters.get(self.TAG_MAP_FILE) else ""
        if choice == len(BUILT_IN_TAG_MAPS) and not tag_map_file:
            raise QgsProcessingException(tr("Choose the tag map file (JSON), or a built-in tag map."))
        config = {"raster": raster, "osm_labels": osm,
                  "tag_map": tag_map_file if choice == len(BUILT_IN_TAG_MAPS) else BUILT_IN_TAG_MAPS[choice],
                  "model": self.parameterAsString(parameters, self.MODEL, context),
                  "out": self.parameterAsFileOutput(parameters, self.OUTPUT, context),
                  **self.engine_config(parameters, context)}
        margin = self.parameterAsDouble(parameters, self.EDGE_MARGIN, context) if self.EDGE_MARGIN in parameters \
            else -1.0
        if margin >= 0:
            config["edge_margin"] = margin
        if parameters.get(self.FUSE_OSM) and self.parameterAsBoolean(parameters, self.FUSE_OSM, context):
            config["osm"] = osm
        return self.train(config, parameters, context, feedback)
