"""geolink:finetune: train a task head on polygons the user labelled, into a model package."""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputHtml,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
        QgsProcessingParameterNumber,
)

from .. import layers
from ..compat import FIELD_ANY, NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_VECTOR_POLYGON
from ..i18n import tr
from ..models import new_model_path
from .base import GeoLinkAlgorithm, model_destination, model_folder_given, push_link

# the backend's geolink.models.card.DECODERS (tests/test_contract.py), the first the default: detail = FPN whose
# class probabilities follow the image's edges (guided upsampling); fpn decodes from the 16 px patches only (blobby
# edges); UPerNet trains about 4x slower than FPN on a CPU
HEADS = ["detail", "fpn", "upernet", "linear"]
MEMBERS = 3  # the backend's finetune --members default: decoders trained side by side and averaged
REPORT_OUTPUTS = ("report_html", "report_json")  # the backend's output keys of the report, in order of preference


class FinetuneAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "finetune"
    USES_MODEL = True
    TITLE = "Train classifier from labelled polygons"
    GROUP = "Training"
    HELP = ("Trains a classification head on top of a GeoLink encoder from polygons you labelled: draw polygons "
            "over the imagery, give each a class in a field, run this, then use the new model in 'Classify land "
            "cover' or 'Map urban function zones'.<br><br>"
            "<b>Class field</b>: text or integer; each distinct value is a class. When the polygon layer is styled "
            "'Categorized' on that field, its colours become the classes' colours in the maps the model makes.<br>"
            "Validation is held out by polygon (a share of the polygons is never trained on), and training stops "
            "early when it no longer improves. The report gives per-class precision, recall and IoU, accuracy and "
            "the confusion matrix. To choose the held-out polygons yourself, mark them 'val' in a split field.<br>"
            "<b>Output</b>: a model package (.safetensors); save it in the GeoLink model folder to find it by name.<br>"
            "<b>Advanced</b>: epochs, head (detail: the default, FPN with edges drawn along the image's own edges; "
            "fpn: decodes from 16 x 16 px patches, blobby edges; upernet; linear), how many decoders are trained "
            f"side by side and averaged ({MEMBERS} half-width ones by default, which with a few dozen polygons score "
            "higher and steadier; 1: one full-width decoder), how many encoder blocks to unfreeze, the "
            "validation share, and the usual device and tiling options.")

    LABELS, CLASS_FIELD, OUTPUT, REPORT, METRICS = "LABELS", "CLASS_FIELD", "OUTPUT", "REPORT", "METRICS"
    EPOCHS, HEAD, MEMBERS, UNFREEZE, VAL_FRACTION = "EPOCHS", "HEAD", "MEMBERS", "UNFREEZE", "VAL_FRACTION"
    SPLIT_FIELD = "SPLIT_FIELD"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.add_raster_input()
        self.addParameter(QgsProcessingParameterFeatureSource(self.LABELS, tr("Labelled polygons"),
                                                              [SOURCE_VECTOR_POLYGON]))
        self.addParameter(QgsProcessingParameterField(
            self.CLASS_FIELD, tr("Class field"), parentLayerParameterName=self.LABELS, type=FIELD_ANY))
        self.add_osm_inputs()
        self.add_model(tr("Base model (a name or a .safetensors path)"))
        self.add_training_options()

    def add_training_options(self, split_field: bool = True) -> None:
        """Advanced training options, the engine options, the model package output, the report and the metrics."""
        advanced = [
            QgsProcessingParameterNumber(self.EPOCHS, tr("Epochs (0: the backend's default)"), NUMBER_INTEGER,
                                         defaultValue=0, minValue=0),
            QgsProcessingParameterEnum(self.HEAD, tr("Head"), HEADS, defaultValue=0),
            QgsProcessingParameterNumber(self.MEMBERS, tr("Decoders averaged (0: the default, {n})").format(n=MEMBERS),
                                         NUMBER_INTEGER, defaultValue=0, minValue=0, maxValue=8),
            QgsProcessingParameterNumber(self.UNFREEZE, tr("Encoder blocks to unfreeze"), NUMBER_INTEGER,
                                         defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(self.VAL_FRACTION, tr("Validation share of the polygons (0: default)"),
                                         NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0, maxValue=0.9),
        ]
        if split_field:
            advanced.append(QgsProcessingParameterField(
                self.SPLIT_FIELD, tr("Field marking held-out polygons ('val' or 'test')"),
                parentLayerParameterName=self.LABELS, type=FIELD_ANY, optional=True))
        self.add_advanced_parameters(*advanced)
        self.add_engine_options()
        self.addParameter(model_destination(
            self.OUTPUT, tr("Model package (a folder: saved there, named after the labelled polygons)")))
        self.addOutput(QgsProcessingOutputHtml(self.REPORT, tr("Training report")))
        self.addOutput(QgsProcessingOutputString(self.METRICS, tr("Validation metrics (JSON)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        raster = self.raster_input(parameters, context, feedback)
        labels_layer = self.parameterAsVectorLayer(parameters, self.LABELS, context)
        field = self.parameterAsString(parameters, self.CLASS_FIELD, context)
        if labels_layer is None or not field:
            raise QgsProcessingException(tr("Choose the labelled polygon layer and its class field."))
        if labels_layer.fields().indexOf(field) < 0:
            raise QgsProcessingException(tr("The layer “{layer}” has no field “{field}”.").format(
                layer=labels_layer.name(), field=field))
        out = self.parameterAsFileOutput(parameters, self.OUTPUT, context)
        folder = model_folder_given(out)
        if folder is not None:
            out = str(new_model_path(labels_layer.name(), folder))
        config = {"raster": raster, "labels": layers.vector_path(labels_layer, feedback), "class_field": field,
                  "osm": self.osm_inputs(parameters, context, feedback),
                  "model": self.parameterAsString(parameters, self.MODEL, context), "out": out,
                  **self.engine_config(parameters, context)}
        split = self.parameterAsString(parameters, self.SPLIT_FIELD, context) if parameters.get(self.SPLIT_FIELD) \
            else ""
        if split:
            config["split_field"] = split
        colours = layers.category_colours(labels_layer, field)
        if colours:
            config["colors"] = colours
        return self.train(config, parameters, context, feedback)

    def train(self, config: dict, parameters, context, feedback) -> dict:
        """Run the finetune job with the advanced options the user set; the package, report and metrics."""
        out = config["out"]
        config["head"] = HEADS[self.parameterAsEnum(parameters, self.HEAD, context)]
        for param, key, cast in ((self.EPOCHS, "epochs", int), (self.MEMBERS, "members", int),
                                 (self.UNFREEZE, "unfreeze", int), (self.VAL_FRACTION, "val_fraction", float)):
            value = self.parameterAsDouble(parameters, param, context) if param in parameters else 0
            if value:
                config[key] = cast(value)
        result = self.run_backend("finetune", config, feedback, outputs=[out])
        outputs = result.get("outputs") or {}
        report = str(next((outputs[k] for k in REPORT_OUTPUTS if outputs.get(k)), ""))
        if result.get("report"):
            feedback.pushInfo(result["report"])
        feedback.pushInfo(tr("Model package: {path}").format(path=out))
        if report:
            push_link(feedback, tr("Training report"), report)
        figures = result.get("figures") or {}
        for key, value in figures.items():
            if isinstance(value, (int, float)):
                feedback.pushInfo(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")
        return {self.OUTPUT: out, self.REPORT: report, self.METRICS: json.dumps(figures, default=str)}
