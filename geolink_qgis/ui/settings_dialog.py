"""Settings: backend interpreter, device, model folder, tag-encoder folder; install and check the backend."""

from __future__ import annotations

import os
from typing import Optional

from qgis.core import QgsApplication
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..backend_installer import (
    InstallError,
    InstallPlan,
    choose_torch_index,
    describe_plan,
    host_python,
)
from ..i18n import tr
from ..paths import backend_source_dir
from .install_task import InstallTask


class SettingsDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(tr("GeoLink settings"))
        self.setMinimumWidth(560)
        self.task: Optional[InstallTask] = None

        self.python = QgsFileWidget()
        self.python.setFilePath(settings.configured_backend_python())
        self.python.lineEdit().setPlaceholderText(str(settings.default_venv()))
        self.env_note = QLabel()
        self.env_note.setWordWrap(True)
        env = os.environ.get("GEOLINK_BACKEND_PYTHON")
        self.env_note.setVisible(bool(env))
        self.env_note.setText(tr("GEOLINK_BACKEND_PYTHON is set and overrides this: {path}").format(path=env))
        self.device = QComboBox()
        self.device.addItems(settings.DEVICES)
        self.device.setCurrentText(settings.device())
        self.model_folder = QgsFileWidget()
        self.model_folder.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.model_folder.setFilePath(settings.model_folder())
        self.model_folder.lineEdit().setPlaceholderText(str(settings.models_home()))
        self.tag_folder = QgsFileWidget()
        self.tag_folder.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.tag_folder.setFilePath(settings.tag_encoder_folder())
        self.tag_folder.setToolTip(tr("A saved CLIP text model folder (transformers format), needed by models that "
                                      "use CLIP tag embeddings such as the official GeoLink weights"))

        form = QFormLayout()
        form.addRow(tr("Backend Python"), self.python)
        form.addRow("", self.env_note)
        form.addRow(tr("Device"), self.device)
        form.addRow(tr("Model folder"), self.model_folder)
        form.addRow(tr("Tag encoder folder (CLIP)"), self.tag_folder)

        self.install_button = QPushButton(tr("Install backend"))
        self.install_button.setToolTip(tr("Create a Python environment with PyTorch and GeoLink in {folder}")
                                       .format(folder=settings.default_venv()))
        self.stop_button = QPushButton(tr("Stop installation"))
        self.stop_button.setVisible(False)
        self.check_button = QPushButton(tr("Check backend"))
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setVisible(False)
        row = QHBoxLayout()
        row.addWidget(self.install_button)
        row.addWidget(self.stop_button)
        row.addWidget(self.check_button)
        row.addStretch(1)

        box = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        box.accepted.connect(self.save)
        box.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.log)
        layout.addWidget(box)
        self.install_button.clicked.connect(lambda: self.install())
        self.stop_button.clicked.connect(self.stop)
        self.check_button.clicked.connect(self.check)
        self.show_backend_state()

    def _show_log(self) -> None:
        """Show the log and grow the dialog to hold it, instead of squashing the settings above it."""
        self.log.setVisible(True)
        self.resize(self.width(), max(self.height(), self.sizeHint().height()))

    def show_backend_state(self) -> None:
        """The backend's state in words, and the install button named for what it will do."""
        state = settings.backend_status()
        self.install_button.setText(state.button + "…")
        goal = tr("Click {button} to finish it.") if state.status == "incomplete" \
            else tr("Click {button} to set it up.")
        self.status.setText(state.summary if state.ready else f"{state.summary} {goal.format(button=state.button)}")
        self.status.setStyleSheet("" if state.ready else "color:#a00;")

    def save(self) -> None:
        settings.set_backend_python(self.python.filePath().strip())
        settings.set_device(self.device.currentText())
        settings.set_model_folder(self.model_folder.filePath().strip())
        settings.set_tag_encoder_folder(self.tag_folder.filePath().strip())
        self.accept()

    def install_plan(self) -> InstallPlan:
        return InstallPlan(venv=settings.default_venv(), backend_source=backend_source_dir(),
                           base_python=host_python(), torch_index=choose_torch_index())

    def confirmation(self, plan: InstallPlan) -> QMessageBox:
        """The question before a multi-gigabyte download: what, from where, to where, how big."""
        box = QMessageBox(QMessageBox.Icon.Question, tr("Install the GeoLink backend"),
                          "<b>{}</b>".format(tr("Download and install the GeoLink backend?")),
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setInformativeText(describe_plan(plan))
        box.button(QMessageBox.StandardButton.Yes).setText(tr("Download and install"))
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        return box

    def install(self, plan: Optional[InstallPlan] = None, confirm: bool = True) -> Optional[InstallTask]:
        """Ask, then install in the background; the log and the outcome show in this dialog (None: not started)."""
        try:
            plan = plan or self.install_plan()
        except InstallError as exc:
            self.status.setText(tr("Cannot install the backend: {error}").format(error=exc))
            return None
        if confirm and self.confirmation(plan).exec() != QMessageBox.StandardButton.Yes:
            return None
        self.task = InstallTask(plan)
        self.task.line.connect(self.log.appendPlainText)
        self.task.progressChanged.connect(lambda pct: self.progress.setValue(int(pct)))
        self.task.done.connect(self._installed)
        self.install_button.setEnabled(False)
        self.stop_button.setVisible(True)
        self.stop_button.setEnabled(True)
        self.progress.setVisible(True)
        self._show_log()
        self.status.setStyleSheet("")
        self.status.setText(tr("Installing the backend (several minutes; QGIS stays usable)…"))
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def stop(self) -> None:
        if self.task is not None:
            self.stop_button.setEnabled(False)
            self.status.setText(tr("Stopping the installation…"))
            self.task.cancel()

    def _installed(self, outcome: str, detail: str) -> None:
        self.install_button.setEnabled(True)
        self.stop_button.setVisible(False)
        self.progress.setVisible(outcome == "ok")
        if outcome == "ok":
            settings.set_backend_python("")  # the installed venv is the default interpreter
            self.python.setFilePath("")
        self.show_backend_state()
        if outcome == "ok":
            self.status.setText(tr("The backend is installed: {detail}").format(detail=detail))
        elif outcome == "cancelled":
            self.status.setText(f"{detail} {self.status.text()}")
        else:
            self.status.setText(tr("Installation failed: {detail}").format(detail=detail) + f"\n\n{self.status.text()}")
        self.adjustSize()  # the outcome can take more lines than the dialog had

    def check(self) -> None:
        from .runner import AlgorithmRun

        self._show_log()
        self.log.clear()
        run = AlgorithmRun("geolink:checkbackend", {}, parent=self)
        run.message.connect(lambda text, err: self.log.appendPlainText(text))
        run.finished.connect(lambda ok, res, err: self.status.setText(
            tr("Backend OK.") if ok else tr("Backend check failed: {error}").format(error=err)))
        run.start()
