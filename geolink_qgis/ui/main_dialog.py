"""The GeoLink dialog: pick the raster, the OSM layers, the task and the model; run; watch progress; cancel."""

from __future__ import annotations

import html
from pathlib import Path
from typing import List, Optional

from qgis.core import QgsMapLayer, QgsProject, QgsRasterLayer, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, QUrl
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import layers, settings
from ..algorithms.train_from_osm import BUILT_IN_TAG_MAPS
from ..compat import layer_filter
from ..i18n import tr
from ..models import list_packages, new_model_path, read_card, suitable, summary
from ..results import is_geolink_output
from .runner import AlgorithmRun

TASKS = [("classify", "Classify land cover"), ("zones", "Map urban function zones"),
         ("embed", "Extract GeoLink embeddings"), ("finetune", "Train classifier from labelled polygons"),
         ("trainfromosm", "Train classifier from OpenStreetMap")]
TRAINING = ("finetune", "trainfromosm")
OSM_FILTER = "OpenStreetMap (*.osm *.pbf);;Vector files (*.gpkg *.geojson *.shp);;All files (*.*)"


class GeoLinkDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None, project: Optional[QgsProject] = None, iface=None):
        super().__init__(parent)
        self.project = project or QgsProject.instance()
        self.iface = iface
        self.run: Optional[AlgorithmRun] = None
        self.warnings: List[str] = []
        self.setWindowTitle("GeoLink")
        self.setMinimumWidth(560)

        self.backend_note = QLabel()
        self.backend_note.setWordWrap(True)
        self.install_button = QPushButton(tr("Install backend…"))
        self.backend_banner = QWidget()
        self.backend_banner.setStyleSheet("background:#fff3cd;")
        banner_row = QHBoxLayout(self.backend_banner)
        banner_row.addWidget(self.backend_note, 1)
        banner_row.addWidget(self.install_button)
        self.packages: list = []  # the model packages found (refresh)
        self.task = QComboBox()
        for alg_id, title in TASKS:
            self.task.addItem(tr(title), alg_id)
        self.raster = QgsMapLayerComboBox()
        self.raster.setFilters(layer_filter("RasterLayer"))
        if hasattr(self.raster, "setProject"):  # QGIS 3.24+; before, the combo shows the current project
            self.raster.setProject(self.project)
        self.osm_layers = QListWidget()
        self.osm_layers.setMaximumHeight(90)
        self.osm_file = QgsFileWidget()
        self.osm_file.setFilter(OSM_FILTER)
        self.labels = QgsMapLayerComboBox()
        self.labels.setFilters(layer_filter("PolygonLayer"))
        self.class_field = QgsFieldComboBox()
        self.class_field.setLayer(self.labels.currentLayer())
        self.labels.layerChanged.connect(self.class_field.setLayer)
        self.tag_map = QComboBox()
        self.tag_map.addItems(BUILT_IN_TAG_MAPS)  # its index is the algorithm's TAG_MAP; a file: the Processing dialog
        self.tag_map.setToolTip("Which OSM tags make which class (see the README for the built-in tag maps)")
        self.compare_osm = QCheckBox("Compare with OSM: mark zones missing in OSM or disagreeing with it")
        self.model = QComboBox()
        self.model.setEditable(True)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.model_info.setStyleSheet("color:#555;")
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.StorageMode.SaveFile)

        self.form = QFormLayout()
        self.form.addRow(tr("Task"), self.task)
        self.form.addRow(tr("Raster"), self.raster)
        self.form.addRow(tr("Labelled polygons"), self.labels)
        self.form.addRow(tr("Class field"), self.class_field)
        self.form.addRow(tr("OSM layers"), self.osm_layers)
        self.form.addRow(tr("OSM file"), self.osm_file)
        self.form.addRow(tr("Tag map"), self.tag_map)
        self.form.addRow(tr("Review"), self.compare_osm)
        self.form.addRow(tr("Model"), self.model)
        self.form.addRow("", self.model_info)
        self.form.addRow(tr("Output"), self.output)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel(tr("Ready."))
        self.status.setWordWrap(True)
        self.status.setTextFormat(Qt.TextFormat.RichText)
        self.status.setOpenExternalLinks(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMinimumHeight(110)

        self.run_button = QPushButton(tr("Run"))
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setEnabled(False)
        self.more_button = QPushButton(tr("Advanced…"))
        self.more_button.setToolTip(tr("Open the Processing dialog of this task with every parameter"))
        self.settings_button = QPushButton(tr("Settings…"))
        self.models_button = QPushButton(tr("Models…"))
        close = QPushButton(tr("Close"))
        buttons = QHBoxLayout()
        for b in (self.settings_button, self.models_button, self.more_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        for b in (self.run_button, self.cancel_button, close):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addWidget(self.backend_banner)
        layout.addLayout(self.form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log)
        layout.addLayout(buttons)

        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.more_button.clicked.connect(self.open_processing_dialog)
        self.settings_button.clicked.connect(self.open_settings)
        self.install_button.clicked.connect(lambda: self.open_settings(install=True))
        self.models_button.clicked.connect(self.open_models)
        close.clicked.connect(self.reject)
        self.task.currentIndexChanged.connect(self._task_changed)
        self.model.currentTextChanged.connect(self._model_changed)
        self.refresh()

    # ------------------------------------------------------------ state

    def refresh(self, prefer_active: bool = True) -> None:
        """Re-read the project's layers, the installed models and the backend's state; `prefer_active` (when the
        dialog opens) makes QGIS's active raster the input."""
        self._refresh_inputs(prefer_active)
        self.packages = list_packages(settings.model_dirs())
        state = settings.backend_status()
        self.backend_banner.setVisible(not state.ready)
        self.install_button.setText(tr("Repair backend…") if state.status == "incomplete" else tr("Install backend…"))
        self.backend_note.setText(
            tr("The GeoLink backend is not installed yet: install it once (PyTorch and GeoLink in their own Python "
               "environment, a 1-4 GB download).")
            + f"<br><small>{tr('Looked for:')} {html.escape(str(state.python))}</small>"
            if state.status == "missing" else f"{state.summary} " + tr("Click Repair backend to finish it."))
        self._show_task_fields()
        self._model_changed()

    def _refresh_inputs(self, prefer_active: bool = True) -> None:
        """The Raster box offers every raster but GeoLink's own outputs, the active layer first choice; the OSM list
        offers the vector layers but GeoLink's outputs, OSM-like layers first."""
        outputs = [lyr for lyr in self.project.mapLayers().values() if is_geolink_output(lyr)]
        self.raster.setExceptedLayerList(outputs)
        self.labels.setExceptedLayerList(outputs)
        active = self.iface.activeLayer() if self.iface is not None else None
        current = self.raster.currentLayer()
        if prefer_active and isinstance(active, QgsRasterLayer) and not is_geolink_output(active):
            self.raster.setLayer(active)
        elif current is None or is_geolink_output(current):
            candidates = [lyr for lyr in self.project.mapLayers().values()
                          if isinstance(lyr, QgsRasterLayer) and not is_geolink_output(lyr)]
            self.raster.setLayer(candidates[0] if candidates else None)

        checked = set(self.selected_osm_ids())
        self.osm_layers.clear()
        vectors = [lyr for lyr in self.project.mapLayers().values()
                   if isinstance(lyr, QgsVectorLayer) and not is_geolink_output(lyr)]
        vectors.sort(key=lambda lyr: (not layers.is_osm_like(lyr), lyr.name().lower()))
        for layer in vectors:
            item = QListWidgetItem(layer.name())
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked)
            if not layers.is_osm_like(layer):
                item.setForeground(Qt.GlobalColor.darkGray)
            self.osm_layers.addItem(item)

    def _fill_models(self, task: str) -> None:
        """The model choices: the packages this task can use ('default' first)."""
        current = self.model.currentText() or "default"
        self.model.clear()
        base_for = "finetune" if task == "trainfromosm" else task  # training from OSM needs the same bases
        names = ["default"] + [m["name"] for m in suitable(self.packages, base_for) if m["name"] != "default"]
        self.model.addItems(names)
        self.model.setCurrentText(current if current in names else "default")

    def _task_changed(self) -> None:
        """Another task: its fields, and a status line that no longer speaks of the last task's run."""
        self._show_task_fields()
        if not self.is_running():
            self._set_status(tr("Ready."))
            self.progress.setValue(0)

    def _show_task_fields(self) -> None:
        task = self.current_task()
        self._fill_models(task)
        self.osm_layers.setToolTip({"zones": tr("Required for zones"),
                                    "trainfromosm": tr("Required: the OSM polygons are the labels")}.get(
            task, tr("Optional: fuse OSM with the imagery")))
        for widget, shown in ((self.labels, task == "finetune"), (self.class_field, task == "finetune"),
                              (self.tag_map, task == "trainfromosm"), (self.compare_osm, task == "zones")):
            widget.setVisible(shown)
            self.form.labelForField(widget).setVisible(shown)
        self.output.setFilter(tr("GeoLink model (*.safetensors)") if task in TRAINING else "")
        self.output.lineEdit().setPlaceholderText(
            tr("[The GeoLink model folder, named after the labels]") if task in TRAINING
            else tr("[Save to a temporary file]"))

    def _model_changed(self) -> None:
        """Show what the chosen model is, from its card, before anything runs."""
        name = self.model.currentText().strip() or "default"
        package = next((m for m in self.packages if m["name"] == name), None)
        card = package["card"] if package else (read_card(Path(name)) if name.endswith(".safetensors") else None)
        if card is None:
            self.model_info.setText(tr("Not an installed model: give a name from the list or a .safetensors file."))
        else:
            self.model_info.setText(summary(card))

    def current_task(self) -> str:
        return self.task.currentData()

    def selected_osm_ids(self) -> List[str]:
        ids = []
        for i in range(self.osm_layers.count()):
            item = self.osm_layers.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                ids.append(item.data(Qt.ItemDataRole.UserRole))
        return ids

    def osm_choices(self) -> List[str]:
        """The layer names the OSM list offers, in its order."""
        return [self.osm_layers.item(i).text() for i in range(self.osm_layers.count())]

    def set_osm_checked(self, chosen: List[QgsMapLayer]) -> None:
        wanted = {layer.id() for layer in chosen}
        for i in range(self.osm_layers.count()):
            item = self.osm_layers.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in wanted
                               else Qt.CheckState.Unchecked)

    def parameters(self) -> dict:
        layer = self.raster.currentLayer()
        params = {"INPUT": layer.id() if layer else None, "MODEL": self.model.currentText().strip() or "default"}
        osm = [self.project.mapLayer(i) for i in self.selected_osm_ids()]
        if osm:
            params["OSM"] = [layer.id() for layer in osm if layer is not None]
        if self.osm_file.filePath():
            params["OSM_FILE"] = self.osm_file.filePath()
        if self.current_task() == "finetune":
            labels = self.labels.currentLayer()
            params["LABELS"] = labels.id() if labels else None
            params["CLASS_FIELD"] = self.class_field.currentField()
            params["OUTPUT"] = self.output.filePath() or str(new_model_path(labels.name() if labels else "model"))
        elif self.current_task() == "trainfromosm":
            params["TAG_MAP"] = self.tag_map.currentIndex()
            raster = self.raster.currentLayer()
            params["OUTPUT"] = self.output.filePath() or str(new_model_path(
                f"{raster.name() if raster else 'osm'}-{self.tag_map.currentText()}"))
        elif self.output.filePath():
            params["OUTPUT"] = self.output.filePath()
        if self.current_task() == "zones" and self.compare_osm.isChecked():
            params["COMPARE_OSM"] = True
        return params

    # ------------------------------------------------------------ running

    def start(self) -> None:
        if self.raster.currentLayer() is None:
            self._set_status(tr("Choose a raster layer first."))
            return
        self.log.clear()
        self.warnings = []
        self.progress.setValue(0)
        self.run = AlgorithmRun(f"geolink:{self.current_task()}", self.parameters(), self.project, self)
        self.run.progress.connect(lambda pct: self.progress.setValue(int(pct)))
        self.run.message.connect(self._message)
        self.run.warning.connect(self._warning)
        self.run.finished.connect(self._finished)
        self._busy(True)
        self._set_status(tr("Running “{task}”…").format(task=self.task.currentText()))
        self.run.start()

    def cancel(self) -> None:
        if self.run is not None:
            self._set_status(tr("Cancelling…"))
            self.run.cancel()

    def _message(self, text: str, is_error: bool) -> None:
        self.log.appendPlainText(("⚠ " if is_error else "") + text)

    def _warning(self, text: str) -> None:
        self.warnings.append(text)

    def _finished(self, ok: bool, results: dict, error: str) -> None:
        self._busy(False)
        if ok:
            self.progress.setValue(100)
            done = self._done_text(results)
            if self.warnings:
                more = len(self.warnings) - 1
                first = self.warnings[0].rstrip(".") + (tr(" (and {n} more in the log)").format(n=more)
                                                        if more else "") + "."
                self._set_status(done + "<br><b>" + tr("Warning:") + "</b> " + html.escape(first), rich=True)
                self._warn_in_message_bar(tr("GeoLink finished with a warning"), first)
            else:
                self._set_status(done, rich=True)
            self._refresh_inputs(prefer_active=False)
        elif error == tr("Cancelled."):
            self._set_status(error)
        else:
            self._set_status("<b>" + tr("Failed:") + "</b> " + html.escape(error).replace("\n", "<br>"), rich=True)
            self._warn_in_message_bar(tr("GeoLink failed"), " ".join(error.splitlines()))

    def _done_text(self, results: dict) -> str:
        if self.current_task() not in TRAINING:
            return html.escape(tr("Done: the results are in the Layers panel, in a group named after this run."))
        name = Path(results.get("OUTPUT", "")).stem
        self.refresh(prefer_active=False)
        self.model.setCurrentText(name)
        text = html.escape(tr("Trained model “{name}”. Choose “Classify land cover” to map with it.").format(
            name=name))
        report = results.get("REPORT")
        if report:
            link = QUrl.fromLocalFile(report).toString()
            text += f' <a href="{link}">{html.escape(tr("Open the training report"))}</a>'
        return text

    def _set_status(self, text: str, rich: bool = False) -> None:
        self.status.setText(text if rich else html.escape(text))

    def _warn_in_message_bar(self, title: str, text: str) -> None:
        """A warning or failure in QGIS's message bar too, where it stays in view after the dialog is closed."""
        if self.iface is not None:
            self.iface.messageBar().pushWarning(title, text)

    def _busy(self, busy: bool) -> None:
        self.run_button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.task.setEnabled(not busy)

    def is_running(self) -> bool:
        return bool(self.cancel_button.isEnabled())

    # ------------------------------------------------------------ other dialogs

    def open_processing_dialog(self) -> None:
        from qgis import processing

        processing.execAlgorithmDialog(f"geolink:{self.current_task()}", self.parameters())

    def open_settings(self, install: bool = False) -> None:
        from .settings_dialog import SettingsDialog

        dialog = SettingsDialog(self)
        if install:
            dialog.install()
        dialog.exec()
        self.refresh()

    def open_models(self) -> None:
        from .models_dialog import ModelsDialog

        ModelsDialog(self).exec()
        self.refresh()
