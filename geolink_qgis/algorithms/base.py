"""What every GeoLink Processing algorithm shares: common parameters, running a backend job with feedback
and cancel, and handing the outputs to `results` for styling."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)
from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QIcon

from .. import layers, results, settings
from ..compat import FILE_BEHAVIOR_FILE, NUMBER_DOUBLE, NUMBER_INTEGER, SOURCE_VECTOR_ANY, add_advanced
from ..i18n import tr
from ..paths import icon_path
from ..worker_client import Callbacks, Job, WorkerError, run_job
from .words import ProcessingWords

DEVICE_CHOICES = ["From the GeoLink settings"] + settings.DEVICES
OSM_FILE_FILTER = "OSM and vector files (*.osm *.pbf *.gpkg *.geojson *.json *.shp);;All files (*.*)"
DEFAULT_MODEL_NOTE = (
    "<br><br><b>About 'default'</b>: a small demonstration model built in this project (ViT-Tiny whose encoder is "
    "not pretrained: random weights, which measured better here than the pretraining the project could afford; "
    "six land-cover classes learnt from 28 hand-drawn polygons of one Sentinel-2 scene in Virginia; trained at "
    "10 m a pixel, so "
    "rasters at other resolutions are resampled to 10 m). It shows how the tools work; it is not an accurate "
    "land-cover model. For real work import the official GeoLink checkpoints (model manager) or train a model on "
    "your own polygons.")

# Processing parameter -> (backend config field, the value that means "the backend's default": not sent).
ENGINE_OPTIONS = {"TILE_SIZE": ("tile_size", 0), "OVERLAP": ("overlap", -1), "BATCH_SIZE": ("batch_size", 0),
                  "GSD": ("gsd", 0)}
MAP_OPTIONS = {"OSM_MAX_NODES": ("osm_max_nodes", 0)}  # the same, for the map tasks only


def model_destination(name: str, description: str) -> QgsProcessingParameterFileDestination:
    """A model package output whose default is the GeoLink model folder itself (shown as that folder's path):
    the algorithm names the file there (`model_folder_given`), so a trained or imported model is never lost in
    a temporary folder."""
    folder = str(settings.models_home()).rstrip("/\\") + os.sep
    # Optional, so that a script or qgis_process may leave it out (QGIS 3.22 does not fill a missing destination
    # with its default); the dialog shows the folder all the same, not "[Skip output]".
    return QgsProcessingParameterFileDestination(name, description, tr("GeoLink model (*.safetensors)"),
                                                 defaultValue=folder, optional=True, createByDefault=True)


def model_folder_given(path: str) -> Optional[Path]:
    """The folder a model output names when it names one rather than a file (None for a file): "" or the
    default are the model folder; a dialog may have added the extension to the folder ("models/.safetensors")."""
    target = Path(path) if path else settings.models_home()
    if not path or path.endswith(("/", "\\")) or target.is_dir():
        return target
    return target.parent if target.name.lower() == ".safetensors" else None


def push_link(feedback: QgsProcessingFeedback, title: str, path: str) -> None:
    """A file as a link in the Processing log where QGIS can show one (3.36+), else as its path."""
    url = QUrl.fromLocalFile(path).toString()
    if hasattr(feedback, "pushFormattedMessage"):
        feedback.pushFormattedMessage(f'{title}: <a href="{url}">{path}</a>', f"{title}: {path}")
    else:
        feedback.pushInfo(f"{title}: {path}")


@dataclass
class Output:
    """An output to style once Processing loads it."""

    path: str
    kind: str
    title: str
    visible: bool = True
    declared: bool = True  # a destination parameter (Processing loads it) or an extra the backend wrote
    main: bool = False  # an extra that is the run's result itself (a batch's mosaic): loaded like a declared one


class GeoLinkAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set `ALG_ID`, `TITLE`, `HELP` and implement initAlgorithm/processAlgorithm."""

    ALG_ID = ""
    BACKEND_TASK = ""  # the backend task it runs, when not ALG_ID
    TITLE = ""
    HELP = ""
    USES_MODEL = False  # the help explains what the 'default' model is
    GROUP = "Mapping"  # the toolbox shows GeoLink > Mapping / Training / Setup

    INPUT, OSM, OSM_FILE, MODEL, EXTENT = "INPUT", "OSM", "OSM_FILE", "MODEL", "EXTENT"
    DEVICE, TILE_SIZE, OVERLAP, BATCH_SIZE, GSD = "DEVICE", "TILE_SIZE", "OVERLAP", "BATCH_SIZE", "GSD"
    BANDS, NATIVE, OSM_MAX_NODES, EMBEDDINGS = "BANDS", "NATIVE", "OSM_MAX_NODES", "EMBEDDINGS"
    MAP_TASK = False  # classify, zones, embed: the backend's raster engine (extent, bands, native resolution)

    def __init__(self):
        super().__init__()
        self._outputs: List[Output] = []
        self._provenance: Dict[str, object] = {}
        self._started = time.strftime("%H:%M:%S")
        self._extent: Optional[str] = None

    def createInstance(self):  # noqa: N802 (QGIS API names)
        return type(self)()

    def name(self) -> str:
        return self.ALG_ID

    def displayName(self) -> str:  # noqa: N802
        return tr(self.TITLE)

    def group(self) -> str:
        return tr(self.GROUP)

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP.lower().replace(" ", "")

    def shortHelpString(self) -> str:  # noqa: N802
        return tr(self.HELP) + (tr(DEFAULT_MODEL_NOTE) if self.USES_MODEL else "")

    def icon(self) -> QIcon:
        return QIcon(icon_path())

    # ------------------------------------------------------------ parameters shared by the map tasks

    def add_raster_input(self) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, tr("Input raster (imagery)")))

    def add_osm_inputs(self, required: bool = False) -> None:
        """OSM layers and an OSM file, both optional for Processing (QGIS marks them so); a task that needs OSM
        says so in the label and checks that one of them is given."""
        label = tr("OpenStreetMap layers (these or an OSM file: required)") if required else tr("OpenStreetMap layers")
        self.addParameter(QgsProcessingParameterMultipleLayers(self.OSM, label, SOURCE_VECTOR_ANY, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.OSM_FILE, tr("OpenStreetMap file (.osm, .pbf or a vector file)"), FILE_BEHAVIOR_FILE,
            fileFilter=OSM_FILE_FILTER, optional=True))

    def add_model(self, description: str = "") -> None:
        self.addParameter(QgsProcessingParameterString(
            self.MODEL, description or tr("Model (a name or a .safetensors path)"), defaultValue="default"))

    def add_embeddings_input(self) -> None:
        """Optional: the 'Extract GeoLink embeddings' output for the same raster and model (skips encoding)."""
        self.addParameter(QgsProcessingParameterRasterLayer(
            self.EMBEDDINGS, tr("Embeddings of this raster and model (optional: skips encoding)"), optional=True))

    def embeddings_config(self, parameters, context) -> dict:
        """{"embeddings": path} when the optional embeddings input is set, else {}."""
        if not parameters.get(self.EMBEDDINGS):
            return {}
        return {"embeddings": self.parameterAsRasterLayer(parameters, self.EMBEDDINGS, context).source()}

    def add_engine_options(self, extent: bool = True) -> None:
        """Advanced: processing extent, device, tile size, overlap, batch size, ground sample distance (and for the
        map tasks, band mapping, native resolution and the cap on fused OSM entities per tile)."""
        params = [
            QgsProcessingParameterExtent(self.EXTENT, tr("Processing extent (required for web layers)"),
                                         optional=True),
        ] if extent else []
        params += [
            QgsProcessingParameterEnum(self.DEVICE, tr("Device"), [tr(DEVICE_CHOICES[0])] + DEVICE_CHOICES[1:],
                                       defaultValue=0),
            QgsProcessingParameterNumber(self.TILE_SIZE, tr("Tile size in pixels (0: the model's)"), NUMBER_INTEGER,
                                         defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(self.OVERLAP, tr("Tile overlap in pixels (-1: the backend's default)"),
                                         NUMBER_INTEGER, defaultValue=-1, minValue=-1),
            QgsProcessingParameterNumber(self.BATCH_SIZE, tr("Batch size (0: automatic)"), NUMBER_INTEGER,
                                         defaultValue=0, minValue=0),
            QgsProcessingParameterNumber(self.GSD, tr("Ground sample distance in metres (0: the model's, or native)"),
                                         NUMBER_DOUBLE, defaultValue=0.0, minValue=0.0),
        ]
        if self.MAP_TASK:
            params += [
                QgsProcessingParameterString(self.BANDS, tr("Bands feeding the model, e.g. 3,2,1 (empty: automatic)"),
                                             defaultValue="", optional=True),
                QgsProcessingParameterBoolean(self.NATIVE, tr("Process at the raster's own resolution"),
                                              defaultValue=False),
                QgsProcessingParameterNumber(self.OSM_MAX_NODES, tr("At most this many OSM entities per tile in the "
                                             "fusion (0: all; bounds the time of dense city tiles)"), NUMBER_INTEGER,
                                             defaultValue=0, minValue=0),
            ]
        self.add_advanced_parameters(*params)

    def add_advanced_parameters(self, *params) -> None:
        """Add parameters shown under "Advanced parameters"."""
        for param in params:
            add_advanced(param)
            self.addParameter(param)

    # ------------------------------------------------------------ reading them

    def raster_input(self, parameters, context, feedback) -> str:
        """The input raster as a file. A file with a processing extent is cut by the backend when it can
        (map tasks: streamed), else here; other layers are exported at the extent."""
        layer = self.parameterAsRasterLayer(parameters, self.INPUT, context)
        if layer is None:
            raise QgsProcessingException(tr("Choose an input raster."))
        self._extent = None
        extent = None
        if parameters.get(self.EXTENT):
            extent = self.parameterAsExtent(parameters, self.EXTENT, context, layer.crs())
        gsd = self.parameterAsDouble(parameters, self.GSD, context) if self.GSD in parameters else 0.0
        if extent is not None and self.MAP_TASK and layers.is_plain_file(layer):
            self._extent = (f"{extent.xMinimum()!r},{extent.yMinimum()!r},"
                            f"{extent.xMaximum()!r},{extent.yMaximum()!r}")
            extent = None
        path = layers.raster_path(layer, extent, gsd or None, feedback)
        self._provenance["input"] = layer.name()
        self._started = time.strftime("%H:%M:%S")
        return path

    def osm_inputs(self, parameters, context, feedback, required: bool = False) -> List[str]:
        vectors = self.parameterAsLayerList(parameters, self.OSM, context) if parameters.get(self.OSM) else []
        files = [self.parameterAsFile(parameters, self.OSM_FILE, context)] if parameters.get(self.OSM_FILE) else []
        paths = layers.osm_paths(vectors, files, feedback)
        if required and not paths:
            raise QgsProcessingException(tr("“{title}” needs OpenStreetMap data: choose OSM layers or an OSM file.")
                                         .format(title=self.displayName()))
        if paths:
            self._provenance["osm"] = ", ".join(paths)
        return paths

    def device(self, parameters, context) -> Optional[str]:
        """The device asked for, or None for the backend's automatic choice."""
        index = self.parameterAsEnum(parameters, self.DEVICE, context) if self.DEVICE in parameters else 0
        value = settings.device() if index == 0 else DEVICE_CHOICES[index]
        return None if value == "auto" else value

    def map_config(self, parameters, context, feedback, osm_required: bool = False) -> dict:
        """What every map task sends the backend: the raster, the OSM, the model and the engine options changed."""
        return {"raster": self.raster_input(parameters, context, feedback),
                "osm": self.osm_inputs(parameters, context, feedback, required=osm_required),
                "model": self.parameterAsString(parameters, self.MODEL, context),
                **self.engine_config(parameters, context)}

    def engine_config(self, parameters, context) -> dict:
        """The advanced options the user changed, under the backend's config names (unset ones are left out, so
        the backend's defaults apply)."""
        config = {}
        for param, (key, unset) in {**ENGINE_OPTIONS, **(MAP_OPTIONS if self.MAP_TASK else {})}.items():
            if param in parameters and parameters[param] not in (None, ""):
                value = self.parameterAsDouble(parameters, param, context)
                if value != unset:
                    config[key] = value if param == self.GSD else int(value)
        device = self.device(parameters, context)
        if device:
            config["device"] = device
        if self.MAP_TASK:
            bands = self.parameterAsString(parameters, self.BANDS, context).strip() if parameters.get(self.BANDS) \
                else ""
            if bands:
                config["bands"] = bands
            if parameters.get(self.NATIVE) and self.parameterAsBoolean(parameters, self.NATIVE, context):
                config["native"] = True
            if self._extent:
                config["extent"] = self._extent
            config["yes"] = True  # Run in the dialog is the go-ahead: a large job is a warning, not a refusal
        return config

    # ------------------------------------------------------------ running and loading

    def run_backend(self, task: str, config: dict, feedback: Optional[QgsProcessingFeedback],
                    outputs: Optional[List[str]] = None) -> dict:
        """Run a backend task in a worker process; return its result event or raise QgsProcessingException."""
        fb = feedback or QgsProcessingFeedback()
        levels = {"warning": fb.pushWarning, "error": fb.reportError, "debug": fb.pushDebugInfo}

        def log(level: str, message: str) -> None:
            levels.get(level, fb.pushInfo)(message)

        def progress(pct: float, message: str) -> None:
            fb.setProgress(pct)
            if message:
                fb.setProgressText(message)

        callbacks = Callbacks(progress=progress, log=log, is_cancelled=fb.isCanceled, words=ProcessingWords(self))
        state = settings.backend_status()  # a missing or incomplete backend: the same words everywhere
        if not state.ready:
            raise QgsProcessingException(state.message)
        python = state.python
        fb.pushDebugInfo(f"GeoLink backend: {python}")
        job = Job(task=task, config=config, outputs=outputs or [], env=settings.worker_env())
        try:
            result = run_job(python, job, callbacks)
        except WorkerError as exc:
            if exc.kind == "cancelled":
                raise QgsProcessingException(tr("Cancelled.")) from None
            raise QgsProcessingException(str(exc)) from None
        self._provenance.update(task=task, model=config.get("model"), device=config.get("device") or "auto",
                                date=time.strftime("%Y-%m-%d %H:%M:%S"))
        for key, value in (result.get("figures") or {}).items():
            if isinstance(value, (str, int, float)):
                self._provenance[key] = value
        return result

    def style_output(self, path: str, kind: str, title: str, visible: bool = True, declared: bool = True,
                     main: bool = False) -> None:
        """Style (and group) this output when Processing loads it into the project."""
        if path:
            self._outputs.append(Output(path, kind, title, visible, declared, main))

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (runs in the main thread after the job)
        loading = any(context.willLoadLayerOnCompletion(o.path) for o in self._outputs if o.declared)
        for out in self._outputs:
            group, name = results.run_names(self.displayName(), out.title, str(self._provenance.get("input", "")),
                                            self._provenance.get("model"), self._started)
            styler = results.ResultStyler(out.kind, group, name, dict(self._provenance), out.visible)
            results.attach(context, out.path, styler, load_if_missing=(loading or out.main) and not out.declared)
        return {}
