"""Run a GeoLink Processing algorithm in a background task and load its styled outputs into a project."""

from __future__ import annotations

from typing import Dict, Optional

from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterVectorDestination,
    QgsProcessingUtils,
    QgsProject,
    QgsTask,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..i18n import tr


class SignallingFeedback(QgsProcessingFeedback):
    """Feedback whose messages reach the dialog as signals (the algorithm runs in another thread)."""

    message = pyqtSignal(str, bool)  # text, is_error

    def pushInfo(self, info):  # noqa: N802 (QGIS API names)
        super().pushInfo(info)
        self.message.emit(info, False)

    warning = pyqtSignal(str)

    def pushWarning(self, warning):  # noqa: N802
        super().pushWarning(warning)
        self.message.emit(tr("Warning: {text}").format(text=warning), True)
        self.warning.emit(warning)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        super().reportError(error, fatalError)
        self.message.emit(error, True)

    def setProgressText(self, text):  # noqa: N802
        super().setProgressText(text)
        self.message.emit(text, False)


class AlgorithmTask(QgsTask):
    """Runs a prepared algorithm in the background, as Processing's runner task does, except that a run the user
    cancelled ends as a completed task (it did what was asked), so QGIS does not announce "Task failed"."""

    def __init__(self, alg, parameters: dict, context: QgsProcessingContext, feedback: QgsProcessingFeedback):
        super().__init__(alg.displayName(), QgsTask.Flag.CanCancel)
        self.alg, self.parameters, self.context, self.feedback = alg, parameters, context, feedback
        self.prepared = alg.prepare(parameters, context, feedback)  # main thread: reads layers and parameters
        self.results: dict = {}
        self.error = ""

    def run(self) -> bool:
        if not self.prepared:
            self.error = tr("The parameters could not be read.")
            return False
        try:
            self.results = dict(self.alg.runPrepared(self.parameters, self.context, self.feedback) or {})
            return True
        except Exception as exc:  # QgsProcessingException, or a bug: reported once, never raised
            self.error = str(exc)
            if self.feedback.isCanceled():
                self.setDescription(tr("{title}: cancelled").format(title=self.alg.displayName()))
                return True
            self.feedback.reportError(self.error, True)  # the dialog's log and QGIS's Processing log, once
            return False

    def cancel(self) -> None:  # the task manager's cancel button stops the backend too
        self.feedback.cancel()
        super().cancel()


class AlgorithmRun(QObject):
    """One run: `start()`, watch `progress`/`message`/`warning`, `cancel()`; `finished(ok, results, error)` at the
    end (error "Cancelled." after a cancel)."""

    progress = pyqtSignal(float)
    message = pyqtSignal(str, bool)
    warning = pyqtSignal(str)
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
        self.feedback.warning.connect(self.warning)
        self.task: Optional[AlgorithmTask] = None

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
        self.task = AlgorithmTask(self.alg, self.parameters, self.context, self.feedback)
        self.task.taskCompleted.connect(lambda: self._completed(True))
        self.task.taskTerminated.connect(lambda: self._completed(False))
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        self.feedback.cancel()

    def _completed(self, ok: bool) -> None:
        task = self.task
        if self.feedback.isCanceled():
            self.finished.emit(False, {}, tr("Cancelled."))
        elif ok:
            results = dict(task.results)
            results.update(self.alg.postProcess(self.context, self.feedback) or {})
            self.load_results()
            self.finished.emit(True, results, "")
        else:
            self.finished.emit(False, {}, task.error or tr("Failed."))

    def load_results(self) -> None:
        """What Processing's dialogs do after a run: load each output, then let its post-processor style it."""
        for source, details in self.context.layersToLoadOnCompletion().items():
            layer = QgsProcessingUtils.mapLayerFromString(source, self.context)
            if layer is None:
                self.message.emit(tr("Could not load {source}").format(source=source), True)
                continue
            layer = self.context.temporaryLayerStore().takeMapLayer(layer) or layer
            self.project.addMapLayer(layer, details.postProcessor() is None)
            if details.postProcessor() is not None:
                details.postProcessor().postProcessLayer(layer, self.context, self.feedback)
