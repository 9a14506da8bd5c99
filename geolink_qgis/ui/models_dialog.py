"""Model manager: the model packages found, their cards, and importing an official checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..models import capabilities_text, describe, list_packages
from .runner import AlgorithmRun

COLUMNS = ["Name", "Can do", "Classes", "File"]


class ModelsDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle("GeoLink models")
        self.resize(760, 480)
        self.models = []
        self.run: Optional[AlgorithmRun] = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.card = QPlainTextEdit()
        self.card.setReadOnly(True)
        self.status = QLabel(f"Imported and trained models go to {settings.models_home()}")
        self.status.setWordWrap(True)
        self.import_button = QPushButton("Import official checkpoint…")
        refresh = QPushButton("Refresh")
        close = QPushButton("Close")
        row = QHBoxLayout()
        row.addWidget(self.import_button)
        row.addWidget(refresh)
        row.addStretch(1)
        row.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(QLabel("Card of the selected model:"))
        layout.addWidget(self.card, 3)
        layout.addWidget(self.status)
        layout.addLayout(row)

        self.table.itemSelectionChanged.connect(self.show_card)
        self.import_button.clicked.connect(self.ask_import)
        refresh.clicked.connect(self.refresh)
        close.clicked.connect(self.accept)
        self.refresh()

    def refresh(self) -> None:
        self.models = list_packages(settings.model_dirs())
        self.table.setRowCount(len(self.models))
        for row, m in enumerate(self.models):
            values = [m["name"], capabilities_text(m["can"]), ", ".join(m["classes"]) or "–", m["path"]]
            for col, value in enumerate(values):
                item = QTableWidgetItem(value)
                item.setToolTip(value)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        if self.models:
            self.table.selectRow(0)
        else:
            self.card.setPlainText("No model packages found. Import an official GeoLink checkpoint, or train one "
                                   "with 'Train classifier from labelled polygons'.")

    def show_card(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.card.setPlainText(describe(self.models[rows[0].row()]["card"]))

    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Official GeoLink checkpoint", "",
                                              "PyTorch checkpoint (*.pth *.pt);;All files (*.*)")
        if path:
            self.import_checkpoint(path)

    def import_checkpoint(self, path: str, out: str = "") -> AlgorithmRun:
        """Run geolink:importcheckpoint in the background; the table refreshes when it is done."""
        params = {"INPUT": path}
        if out:
            params["OUTPUT"] = out
        self.run = AlgorithmRun("geolink:importcheckpoint", params, parent=self)
        self.run.progress.connect(lambda pct: self.status.setText(f"Importing {Path(path).name}: {pct:.0f}%"))
        self.run.finished.connect(self._imported)
        self.import_button.setEnabled(False)
        self.run.start()
        return self.run

    def _imported(self, ok: bool, results: dict, error: str) -> None:
        self.import_button.setEnabled(True)
        if ok:
            self.status.setText(f"Imported as '{results.get('MODEL_NAME')}': {results.get('OUTPUT')}")
            self.refresh()
            for row, m in enumerate(self.models):
                if m["path"] == results.get("OUTPUT"):
                    self.table.selectRow(row)
        else:
            self.status.setText("Import failed: " + error)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
