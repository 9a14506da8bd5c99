"""Backend jobs run from a dialog or a map tool, outside Processing: one after the other in a worker process, in a
QgsTask (off the main thread, cancelable from the dialog or QGIS's task manager)."""

from __future__ import annotations

from typing import Callable, List

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .. import settings
from ..algorithms.words import ProcessingWords
from ..i18n import tr
from ..worker_client import Callbacks, Job, WorkerError, run_job


class JobsTask(QgsTask):
    """Runs `jobs`; `done(ok, result, error)` is called on the main thread with the last job's result event, or
    the error in QGIS's words ("Cancelled." after a cancel). `message` carries the backend's progress texts."""

    message = pyqtSignal(str)

    def __init__(self, description: str, jobs: List[Job], done: Callable[[bool, dict, str], None]):
        super().__init__(description)
        self.jobs, self.done = jobs, done
        self.result: dict = {}
        self.error = ""

    def run(self) -> bool:
        try:
            for i, job in enumerate(self.jobs):
                def progress(pct, msg, i=i):
                    self.setProgress((i + pct / 100) / len(self.jobs) * 100)
                    if msg:
                        self.message.emit(msg)
                self.result = run_job(settings.backend_python(), job,
                                      Callbacks(progress=progress, is_cancelled=self.isCanceled,
                                                words=ProcessingWords()))
            return True
        except WorkerError as exc:
            self.error = tr("Cancelled.") if exc.kind == "cancelled" else str(exc)
            return False

    def finished(self, ok: bool) -> None:  # QgsTask API: runs on the main thread
        self.done(ok, self.result, self.error or ("" if ok else tr("Cancelled.")))
