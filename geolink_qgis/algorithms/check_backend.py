"""geolink:checkbackend: report the backend's interpreter, libraries, devices and models."""

from __future__ import annotations

from qgis.core import QgsProcessingOutputString

from .. import settings
from ..i18n import tr
from .base import GeoLinkAlgorithm


class CheckBackendAlgorithm(GeoLinkAlgorithm):
    ALG_ID = "checkbackend"
    BACKEND_TASK = "doctor"
    TITLE = "Check GeoLink backend"
    GROUP = "Setup"
    HELP = ("Reports the backend interpreter, the versions of torch (and its CUDA build), torch_geometric, timm and "
            "GDAL, the compute devices found (each GPU's name and memory, or CPU only and why a GPU is not usable) "
            "and the model packages found. Run it first when something does not work.")

    REPORT = "REPORT"

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addOutput(QgsProcessingOutputString(self.REPORT, tr("Backend report")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        result = self.run_backend("doctor", {"model_dirs": settings.model_dirs()}, feedback)
        report = result.get("report", "")
        for line in report.splitlines():
            feedback.pushInfo(line)
        return {self.REPORT: report}
