"""The GeoLink dialog: pick the raster, the OSM layers, the task and the model; run; watch progress; cancel."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from qgis.core import QgsMapLayer, QgsProject, QgsVectorLayer
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
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

from .. import settings
from ..compat import layer_filter
from ..models import list_packages, suitable
from .runner import AlgorithmRun

TASKS = [("classify", "Classify land cover"), ("zones", "Map urban function zones"),
         ("embed", "Extract GeoLink embeddings"), ("finetune", "Train classifier from labelled polygons")]
OSM_FILTER = "OpenStreetMap (*.osm *.pbf);;Vector files (*.gpkg *.geojson *.shp);;All files (*.*)"


class GeoLinkDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None, project: Optional[QgsProject] = None, iface=None):
        super().__init__(parent)
        self.project = project or QgsProject.instance()
        self.iface = iface
        self.run: Optional[AlgorithmRun] = None
        self.setWindowTitle("GeoLink")
        self.setMinimumWidth(520)

        self.backend_note = QLabel()
        self.backend_note.setWordWrap(True)
        self.install_button = QPushButton("Install backend…")
        self.backend_banner = QWidget()
        self.backend_banner.setStyleSheet("background:#fff3cd;")
        banner_row = QHBoxLayout(self.backend_banner)
        banner_row.addWidget(self.backend_note, 1)
        banner_row.addWidget(self.install_button)
        self.packages: list = []  # the model packages found (refresh)
        self.task = QComboBox()
        for alg_id, title in TASKS:
            self.task.addItem(title, alg_id)
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
        self.model = QComboBox()
        self.model.setEditable(True)
        self.output = QgsFileWidget()
        self.output.setStorageMode(QgsFileWidget.StorageMode.SaveFile)
        self.output.lineEdit().setPlaceholderText("[Save to a temporary file]")

        self.form = QFormLayout()
        self.form.addRow("Task", self.task)
        self.form.addRow("Raster", self.raster)
        self.form.addRow("Labelled polygons", self.labels)
        self.form.addRow("Class field", self.class_field)
        self.form.addRow("OSM layers", self.osm_layers)
        self.form.addRow("OSM file", self.osm_file)
        self.form.addRow("Model", self.model)
        self.form.addRow("Output", self.output)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.status = QLabel("Ready.")
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(2000)
        self.log.setMinimumHeight(110)

        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.more_button = QPushButton("Advanced…")
        self.more_button.setToolTip("Open the Processing dialog of this task with every parameter")
        self.settings_button = QPushButton("Settings…")
        self.models_button = QPushButton("Models…")
        close = QPushButton("Close")
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
        self.refresh()

    # ------------------------------------------------------------ state

    def refresh(self) -> None:
        """Re-read the project's vector layers, the installed models and the backend's state."""
        checked = set(self.selected_osm_ids())
        self.osm_layers.clear()
        for layer in self.project.mapLayers().values():
            if isinstance(layer, QgsVectorLayer):
                item = QListWidgetItem(layer.name())
                item.setData(Qt.ItemDataRole.UserRole, layer.id())
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                item.setCheckState(Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked)
                self.osm_layers.addItem(item)
        self.packages = list_packages(settings.model_dirs())
        state = settings.backend_status()
        self.backend_banner.setVisible(not state.ready)
        self.install_button.setText("Repair backend…" if state.status == "incomplete" else "Install backend…")
        self.backend_note.setText(
            "The GeoLink backend is not installed yet: install it once (PyTorch and GeoLink in their own Python "
            f"environment, a 1-4 GB download).<br><small>Looked for: {state.python}</small>"
            if state.status == "missing" else f"{state.summary} Click Repair backend to finish it.")
        self._task_changed()

    def _fill_models(self, task: str) -> None:
        """The model choices: the packages this task can use ('default' first)."""
        current = self.model.currentText() or "default"
        self.model.clear()
        names = ["default"] + [m["name"] for m in suitable(self.packages, task) if m["name"] != "default"]
        self.model.addItems(names)
        self.model.setCurrentText(current if current in names else "default")

    def _task_changed(self) -> None:
        task = self.current_task()
        self._fill_models(task)
        self.osm_layers.setToolTip("Required for zones" if task == "zones" else "Optional: fuse OSM with the imagery")
        for widget in (self.labels, self.class_field):
            widget.setVisible(task == "finetune")
            self.form.labelForField(widget).setVisible(task == "finetune")
        self.output.setFilter("GeoLink model (*.safetensors)" if task == "finetune" else "")
        self.output.lineEdit().setPlaceholderText(
            f"[Save in {settings.models_home()}]" if task == "finetune" else "[Save to a temporary file]")

    def current_task(self) -> str:
        return self.task.currentData()

    def selected_osm_ids(self) -> List[str]:
        ids = []
        for i in range(self.osm_layers.count()):
            item = self.osm_layers.item(i)
            if item.checkState() == Qt.CheckState.Checked:
                ids.append(item.data(Qt.ItemDataRole.UserRole))
        return ids

    def set_osm_checked(self, layers: List[QgsMapLayer]) -> None:
        wanted = {layer.id() for layer in layers}
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
            params["OUTPUT"] = self.output.filePath() or str(self._new_model_path(labels))
        elif self.output.filePath():
            params["OUTPUT"] = self.output.filePath()
        return params

    def _new_model_path(self, labels) -> Path:
        """A model trained here goes to the model folder, named after the label layer, never over another one."""
        home = settings.models_home()
        home.mkdir(parents=True, exist_ok=True)
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in (labels.name() if labels else "model"))
        path, i = home / f"{stem}.safetensors", 2
        while path.exists():
            path, i = home / f"{stem}-{i}.safetensors", i + 1
        return path

    # ------------------------------------------------------------ running

    def start(self) -> None:
        if self.raster.currentLayer() is None:
            self.status.setText("Choose a raster layer first.")
            return
        self.log.clear()
        self.progress.setValue(0)
        self.run = AlgorithmRun(f"geolink:{self.current_task()}", self.parameters(), self.project, self)
        self.run.progress.connect(lambda pct: self.progress.setValue(int(pct)))
        self.run.message.connect(self._message)
        self.run.finished.connect(self._finished)
        self._busy(True)
        self.status.setText(f"Running {self.task.currentText().lower()}…")
        self.run.start()

    def cancel(self) -> None:
        if self.run is not None:
            self.status.setText("Cancelling…")
            self.run.cancel()

    def _message(self, text: str, is_error: bool) -> None:
        self.log.appendPlainText(("⚠ " if is_error else "") + text)

    def _finished(self, ok: bool, results: dict, error: str) -> None:
        self._busy(False)
        if ok and self.current_task() == "finetune":
            self.progress.setValue(100)
            name = Path(results.get("OUTPUT", "")).stem
            self.refresh()
            self.model.setCurrentText(name)
            self.status.setText(f"Trained model '{name}'. Choose 'Classify land cover' to map with it."
                                + (f" Report: {results['REPORT']}" if results.get("REPORT") else ""))
        elif ok:
            self.progress.setValue(100)
            self.status.setText("Done: the results are in the layer panel, in a group named after this run.")
        else:
            self.status.setText(error.splitlines()[0] if error else "Failed.")

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
