"""The plugin object QGIS loads: registers the Processing provider, adds the toolbar button and menu."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .paths import icon_path
from .provider import GeoLinkProvider

MENU = "&GeoLink"


class GeoLinkPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self) -> None:  # noqa: N802 (QGIS calls it by this name)
        self.provider = GeoLinkProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        action = QAction(QIcon(icon_path()), "GeoLink…", self.iface.mainWindow())
        action.setObjectName("geolinkOpenDialog")
        action.triggered.connect(self.open_dialog)
        self.iface.addToolBarIcon(action)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)

    def open_dialog(self) -> None:
        from qgis import processing

        processing.execAlgorithmDialog("geolink:checkbackend")

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
