"""geolink:importcheckpoint: convert an official GeoLink .pth checkpoint into a model package."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..compat import FILE_BEHAVIOR_FILE, NUMBER_DOUBLE
from ..i18n import tr
from ..models import new_model_path
from .base import GeoLinkAlgorithm, model_destination, model_folder_given


class ImportCheckpointAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "importcheckpoint"
    BACKEND_TASK = "import-checkpoint"
    TITLE = "Import GeoLink checkpoint"
    GROUP = "Setup"
    HELP = ("Converts an official GeoLink checkpoint (.pth, as released with the paper) into a GeoLink model "
            "package (.safetensors with a card describing the architecture, bands, normalisation and provenance, "
            "including the checkpoint's SHA-256, also shown in the log). The checkpoint is read safely (weights "
            "only, nothing is executed) and checked key by key; a wrong file is refused with the name of the first "
            "mismatch. Where to download the checkpoints: the GeoLink models dialog.<br><br>"
            "Leave the output empty to put the package in the GeoLink model folder, where the other algorithms "
            "find it by name (the file name without extension).")

    INPUT, OUTPUT, MODEL_NAME, NAME, GSD, HALF = "INPUT", "OUTPUT", "MODEL_NAME", "NAME", "GSD", "HALF"
    SHA256, TEXT_ENCODER = "SHA256", "TEXT_ENCODER"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterFile(self.INPUT, tr("Official checkpoint"), FILE_BEHAVIOR_FILE,
                                                     fileFilter="PyTorch checkpoint (*.pth *.pt);;All files (*.*)"))
        self.addParameter(model_destination(
            self.OUTPUT, tr("Model package (a folder: saved there, named after the checkpoint)")))
        self.add_advanced_parameters(
            QgsProcessingParameterString(self.NAME, tr("Model name shown in QGIS (empty: the file name)"),
                                         optional=True),
            QgsProcessingParameterNumber(self.GSD, tr("Ground sample distance the model expects, in "
                                                      "metres (0: none, use each raster's)"),
                                         NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0),
            QgsProcessingParameterBoolean(self.HALF, tr("Store the weights as float16 (half the size)"),
                                          defaultValue=False))
        self.addOutput(QgsProcessingOutputString(self.MODEL_NAME, tr("Model name")))
        self.addOutput(QgsProcessingOutputString(self.SHA256, tr("SHA-256 of the checkpoint")))
        self.addOutput(QgsProcessingOutputString(self.TEXT_ENCODER, tr("Tag text encoder the model needs")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        src = self.parameterAsFile(parameters, self.INPUT, context)
        if not src or not Path(src).is_file():
            raise QgsProcessingException(tr("Checkpoint not found: {path}").format(path=src or "(none)"))
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        folder = model_folder_given(out)
        if folder is not None:
            out = str(new_model_path(Path(src).stem, folder))
        config = {"src": src, "out": out}
        if parameters.get(self.NAME):
            config["name"] = self.parameterAsString(parameters, self.NAME, context)
        if parameters.get(self.GSD) and self.parameterAsDouble(parameters, self.GSD, context) > 0:
            config["gsd"] = self.parameterAsDouble(parameters, self.GSD, context)
        if parameters.get(self.HALF) and self.parameterAsBoolean(parameters, self.HALF, context):
            config["half"] = True
        figures = self.run_backend("import-checkpoint", config, feedback, outputs=[out]).get("figures") or {}
        feedback.pushInfo(tr("Model package written to {path}").format(path=out))
        return {self.OUTPUT: out, self.MODEL_NAME: Path(out).stem, self.SHA256: figures.get("source_sha256", ""),
                self.TEXT_ENCODER: figures.get("text_encoder", "")}
