"""Install the backend in a QgsTask: backend_installer.install() in the background, log lines as signals.
Cancelling the task stops pip (its whole process tree) within seconds and removes a half-made environment."""

from __future__ import annotations

import re
from typing import Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from ..backend_installer import InstallCancelled, InstallError, InstallPlan, install
from ..i18n import tr

# Milestones of install()'s log, as progress: the PyTorch download is the long part.
STAGES = [(re.compile(r"^Creating the backend environment"), 5), (re.compile(r"^Installing PyTorch"), 10),
          (re.compile(r"^Installing the GeoLink backend"), 70), (re.compile(r"import geolink, torch"), 95)]


class InstallTask(QgsTask):
    line = pyqtSignal(str)
    done = pyqtSignal(str, str)  # "ok", "failed" or "cancelled"; the interpreter or the error in words

    def __init__(self, plan: InstallPlan):
        super().__init__(tr("Installing the GeoLink backend"), QgsTask.Flag.CanCancel)
        self.plan = plan
        self.python: Optional[str] = None
        self.outcome = "failed"
        self.error = ""

    def _log(self, text: str) -> None:
        self.line.emit(text)
        for pattern, pct in STAGES:
            if pattern.search(text):
                self.setProgress(pct)

    def run(self) -> bool:
        try:
            self.python = str(install(self.plan, log=self._log, cancelled=self.isCanceled))
        except InstallCancelled:
            self.outcome, self.error = "cancelled", tr("Installation cancelled.")
            return False
        except InstallError as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # a bug or an OS error: still reported in words, never a crash of QGIS
            self.error = tr("The installation stopped unexpectedly: {error}").format(error=exc)
            return False
        self.outcome = "ok"
        self.setProgress(100)
        return True

    def finished(self, result: bool) -> None:
        self.done.emit(self.outcome, self.python if result else self.error)
