"""What every GeoLink Processing algorithm shares: running a backend job with feedback and cancel."""

from __future__ import annotations

from typing import List, Optional

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingFeedback
from qgis.PyQt.QtGui import QIcon

from .. import settings
from ..paths import icon_path
from ..worker_client import Callbacks, Job, WorkerError, run_job


class GeoLinkAlgorithm(QgsProcessingAlgorithm):
    """Subclasses set `ALG_ID`, `TITLE`, `HELP` and implement initAlgorithm/processAlgorithm."""

    ALG_ID = ""
    TITLE = ""
    HELP = ""
    GROUP = "GeoLink"

    def createInstance(self):  # noqa: N802 (QGIS API names)
        return type(self)()

    def name(self) -> str:
        return self.ALG_ID

    def displayName(self) -> str:  # noqa: N802
        return self.TITLE

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP.lower().replace(" ", "")

    def shortHelpString(self) -> str:  # noqa: N802
        return self.HELP

    def icon(self) -> QIcon:
        return QIcon(icon_path())

    def run_backend(self, task: str, config: dict, feedback: Optional[QgsProcessingFeedback],
                    outputs: Optional[List[str]] = None) -> dict:
        """Run a backend task in a worker process; return its result event or raise QgsProcessingException."""
        fb = feedback or QgsProcessingFeedback()
        levels = {"warning": fb.reportError, "error": fb.reportError, "debug": fb.pushDebugInfo}

        def log(level: str, message: str) -> None:
            if level == "warning":
                fb.reportError("Warning: " + message, False)
            else:
                levels.get(level, fb.pushInfo)(message)

        def progress(pct: float, message: str) -> None:
            fb.setProgress(pct)
            if message:
                fb.setProgressText(message)

        callbacks = Callbacks(progress=progress, log=log, is_cancelled=fb.isCanceled)
        python = settings.backend_python()
        fb.pushDebugInfo(f"GeoLink backend: {python}")
        try:
            return run_job(python, Job(task=task, config=config, outputs=outputs or []), callbacks)
        except WorkerError as exc:
            if exc.kind == "cancelled":
                raise QgsProcessingException("Cancelled.") from None
            raise QgsProcessingException(str(exc)) from None
