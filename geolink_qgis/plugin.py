"""The plugin object QGIS loads: registers the Processing provider, adds the toolbar button and menu."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon

try:  # Qt 6 (QGIS 4) moved QAction to QtGui
    from qgis.PyQt.QtGui import QAction
except ImportError:
    from qgis.PyQt.QtWidgets import QAction

from .i18n import install_translator, tr
from .paths import PLUGIN_DIR, icon_path
from .provider import GeoLinkProvider

MENU = "&GeoLink"


class GeoLinkPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []
        self.dialog = None
        self.similar_tool = None
        self.find_action = None
        install_translator(PLUGIN_DIR)

    def initProcessing(self) -> None:  # noqa: N802 (QGIS calls it by this name)
        self.provider = GeoLinkProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        main = self._action(tr("GeoLink…"), "geolinkOpenDialog", self.open_dialog, QIcon(icon_path()))
        self.iface.addToolBarIcon(main)
        find = self.find_action = self._action(tr("Find similar"), "geolinkFindSimilar", self.find_similar,
                                               QIcon(icon_path()))
        find.setCheckable(True)
        find.setToolTip(tr("Find similar: click a place on a raster (shift-click to add more) to map every place "
                           "like it"))
        self.iface.addToolBarIcon(find)
        self._action(tr("Clear cached embeddings…"), "geolinkClearEmbeddings", self.clear_embeddings)
        self._action(tr("Settings and backend…"), "geolinkSettings", self.open_settings)
        self._action(tr("Models…"), "geolinkModels", self.open_models)

    def _action(self, text: str, name: str, slot, icon: QIcon = None) -> QAction:
        action = QAction(icon or QIcon(), text, self.iface.mainWindow())
        action.setObjectName(name)
        action.triggered.connect(slot)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)
        return action

    def open_dialog(self) -> None:
        from .ui.main_dialog import GeoLinkDialog

        if self.dialog is None:
            self.dialog = GeoLinkDialog(self.iface.mainWindow(), iface=self.iface)
        else:
            self.dialog.refresh()
        self.dialog.show()
        self.dialog.raise_()

    def find_similar(self) -> None:
        from .ui.similar_tool import FindSimilarTool

        if self.similar_tool is None:
            self.similar_tool = FindSimilarTool(self.iface.mapCanvas(), self.iface.messageBar(), self.iface.activeLayer)
            self.similar_tool.setAction(self.find_action)
        self.iface.mapCanvas().setMapTool(self.similar_tool)

    def clear_embeddings(self) -> None:
        from .ui.similar_tool import clear_cache_interactive

        clear_cache_interactive(self.iface.mainWindow())

    def open_settings(self) -> None:
        from .ui.settings_dialog import SettingsDialog

        SettingsDialog(self.iface.mainWindow()).exec()

    def open_models(self) -> None:
        from .ui.models_dialog import ModelsDialog

        ModelsDialog(self.iface.mainWindow()).exec()

    def unload(self) -> None:
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
            self.iface.removeToolBarIcon(action)
        self.actions = []
        if self.similar_tool is not None:
            self.iface.mapCanvas().unsetMapTool(self.similar_tool)
            self.similar_tool = None
        if self.dialog is not None:
            self.dialog.close()
            self.dialog = None
        install_translator(PLUGIN_DIR)
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
