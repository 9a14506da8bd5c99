"""geolink:batch: classify, embed or zone every raster of a folder, on this computer or on a Ray cluster."""

from __future__ import annotations

import glob
from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .. import results
from ..compat import FILE_BEHAVIOR_FOLDER, NUMBER_INTEGER
from ..i18n import tr
from .base import GeoLinkAlgorithm

# Backend task, what the user picks, how its outputs are styled.
TASKS = [("classify", "Classify land cover", results.CLASSES), ("embed", "Extract embeddings", results.EMBEDDINGS),
         ("zones", "Map urban function zones", None)]
ENGINES = [("local", "This computer"), ("ray", "A Ray cluster")]


class BatchAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "batch"
    TITLE = "Process a folder of rasters"
    HELP = ("Runs one GeoLink task (classify land cover, extract embeddings or map urban function zones) on every "
            "raster of a folder whose name matches the pattern, and writes one output per raster into the output "
            "folder, named after it: each exactly what the single-raster algorithm writes. Land cover and "
            "embeddings also get <i>mosaic.vrt</i> over all outputs, loaded styled when the run ends.<br><br>"
            "A raster that fails (a damaged file) is reported and the others finish; <i>batch-report.json</i> "
            "lists every raster with its status, time and any error. Running again skips rasters whose output "
            "was made from the same raster, model and options.<br>"
            "<b>On a cluster</b>: choose <i>A Ray cluster</i> and give the head's address (empty: Ray starts on "
            "this computer). Every node needs the GeoLink backend, and the rasters, OSM files and output folder "
            "must be reachable at the same paths from every node.")

    MAP_TASK = True
    TASK, FOLDER, PATTERN, OUTPUT, REPORT = "TASK", "FOLDER", "PATTERN", "OUTPUT", "REPORT"
    ENGINE, RAY_ADDRESS, WORKERS, FORCE = "ENGINE", "RAY_ADDRESS", "WORKERS", "FORCE"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterEnum(self.TASK, tr("Task"), [tr(t[1]) for t in TASKS], defaultValue=0))
        self.addParameter(QgsProcessingParameterFile(self.FOLDER, tr("Folder of rasters"), FILE_BEHAVIOR_FOLDER))
        self.addParameter(QgsProcessingParameterString(self.PATTERN, tr("Raster file names (a pattern; ** for "
                                                          "subfolders)"), defaultValue="*.tif"))
        self.add_osm_inputs()
        self.add_model()
        self.addParameter(QgsProcessingParameterEnum(self.ENGINE, tr("Run on"), [tr(e[1]) for e in ENGINES],
                                                     defaultValue=0))
        self.add_advanced_parameters(
            QgsProcessingParameterString(self.RAY_ADDRESS, tr("Ray cluster address, e.g. 10.0.0.5:6379 "
                                            "(empty: start Ray on this computer)"), optional=True),
            QgsProcessingParameterNumber(self.WORKERS, tr("Rasters processed at once (0: automatic)"),
                                         NUMBER_INTEGER, defaultValue=0, minValue=0),
            QgsProcessingParameterBoolean(self.FORCE, tr("Redo rasters whose outputs are up to date"),
                                          defaultValue=False))
        self.add_engine_options(extent=False)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT, tr("Output folder")))
        self.addOutput(QgsProcessingOutputFile(self.REPORT, tr("Batch report")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        task, _, kind = TASKS[self.parameterAsEnum(parameters, self.TASK, context)]
        folder = self.parameterAsFile(parameters, self.FOLDER, context)
        if not folder or not Path(folder).is_dir():
            raise QgsProcessingException(tr("Choose the folder that holds the rasters."))
        pattern = self.parameterAsString(parameters, self.PATTERN, context).strip() or "*.tif"
        out = self.parameterAsString(parameters, self.OUTPUT, context)
        options = {"model": self.parameterAsString(parameters, self.MODEL, context),
                   **self.engine_config(parameters, context)}
        osm = self.osm_inputs(parameters, context, feedback, required=task == "zones")
        if osm:
            options["osm"] = osm
        config = {"task": task, "rasters": [str(Path(glob.escape(folder)) / pattern)], "out_dir": out,
                  "options": options,
                  "engine": ENGINES[self.parameterAsEnum(parameters, self.ENGINE, context)][0],
                  "workers": self.parameterAsInt(parameters, self.WORKERS, context),
                  "force": self.parameterAsBoolean(parameters, self.FORCE, context)}
        address = self.parameterAsString(parameters, self.RAY_ADDRESS, context).strip() \
            if parameters.get(self.RAY_ADDRESS) else ""
        if address:
            config["ray_address"] = address
        self._provenance["input"] = Path(folder).name  # the run's group and layer names say the folder
        result = self.run_backend("batch", config, feedback)
        self._provenance["model"] = options["model"]
        outputs = result.get("outputs") or {}
        if result.get("incomplete"):  # the others' outputs are kept and loaded
            feedback.reportError(result["incomplete"], fatalError=False)
        if kind and outputs.get("mosaic"):
            self.style_output(outputs["mosaic"], kind, tr("Mosaic"), declared=False, main=True)
        return {self.OUTPUT: out, self.REPORT: outputs.get("report")}
