"""The "GeoLink" Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .paths import icon_path


class GeoLinkProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "geolink"

    def name(self) -> str:
        return "GeoLink"

    def longName(self) -> str:  # noqa: N802
        return "GeoLink: imagery + OpenStreetMap foundation model"

    def icon(self) -> QIcon:
        return QIcon(icon_path())

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802 (the backend writes GeoTIFF)
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self):  # noqa: N802 (and GeoPackage)
        return ["gpkg"]

    def defaultVectorFileExtension(self, hasGeometry=True):  # noqa: N802, N803
        return "gpkg"

    def defaultRasterFileExtension(self):  # noqa: N802
        return "tif"

    def loadAlgorithms(self) -> None:  # noqa: N802
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())
