"""Run a GeoLink Processing algorithm in a background task and load its styled outputs into a project."""

from __future__ import annotations

from typing import Dict, Optional

from qgis.core import (
    QgsApplication,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsProject,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal


class SignallingFeedback(QgsProcessingFeedback):
    """Feedback whose messages reach the dialog as signals (the algorithm runs in another thread)."""

    message = pyqtSignal(str, bool)  # text, is_error

    def pushInfo(self, info):  # noqa: N802 (QGIS API names)
        super().pushInfo(info)
        self.message.emit(info, False)

    def pushWarning(self, warning):  # noqa: N802
        super().pushWarning(warning)
        self.message.emit("Warning: " + warning, True)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        super().reportError(error, fatalError)
        self.message.emit(error, True)

    def setProgressText(self, text):  # noqa: N802
        super().setProgressText(text)
        self.message.emit(text, False)


class AlgorithmRun(QObject):
    """One run: `start()`, watch `progress`/`message`, `cancel()`; `finished(ok, results, error)` at the end."""

    progress = pyqtSignal(float)
    message = pyqtSignal(str, bool)
    finished = pyqtSignal(bool, dict, str)

    def __init__(self, alg_id: str, parameters: Dict[str, object], project: Optional[QgsProject] = None,
                 parent: Optional[QObject] = None):
        super().__init__(parent)
        self.project = project or QgsProject.instance()
        self.alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
        if self.alg is None:
            raise ValueError(f"Unknown algorithm {alg_id}")
        self.parameters = self._load_outputs_into_project(dict(parameters))
        self.context = QgsProcessingContext()
        self.context.setProject(self.project)
        self.feedback = SignallingFeedback()
        self.feedback.progressChanged.connect(self.progress)
        self.feedback.message.connect(self.message)
        self.task: Optional[QgsProcessingAlgRunnerTask] = None
        self.errors = []
        self.feedback.message.connect(lambda text, is_error: self.errors.append(text) if is_error else None)

    def _load_outputs_into_project(self, parameters: dict) -> dict:
        for param in self.alg.destinationParameterDefinitions():
            if isinstance(param, (QgsProcessingParameterRasterDestination, QgsProcessingParameterVectorDestination)):
                value = parameters.get(param.name())
                if value is None and not param.createByDefault():
                    continue
                parameters[param.name()] = QgsProcessingOutputLayerDefinition(value or "TEMPORARY_OUTPUT",
                                                                              self.project)
        return parameters

    def start(self) -> None:
        self.task = QgsProcessingAlgRunnerTask(self.alg, self.parameters, self.context, self.feedback)
        self.task.executed.connect(self._executed)
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        self.feedback.cancel()

    def _executed(self, ok: bool, results: dict) -> None:
        if ok:
            self.load_results()
            self.finished.emit(True, dict(results or {}), "")
        else:
            error = "Cancelled." if self.feedback.isCanceled() else (self.errors[-1] if self.errors else "Failed.")
            self.finished.emit(False, {}, error)

    def load_results(self) -> None:
        """What Processing's dialogs do after a run: load each output, then let its post-processor style it."""
        for source, details in self.context.layersToLoadOnCompletion().items():
            layer = QgsProcessingUtils.mapLayerFromString(source, self.context)
            if layer is None:
                self.message.emit(f"Could not load {source}", True)
                continue
            layer = self.context.temporaryLayerStore().takeMapLayer(layer) or layer
            self.project.addMapLayer(layer, details.postProcessor() is None)
            if details.postProcessor() is not None:
                details.postProcessor().postProcessLayer(layer, self.context, self.feedback)
