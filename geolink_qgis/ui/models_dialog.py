"""Model manager: the model packages found and their cards; the official GeoLink weights (where to get them,
importing a downloaded checkpoint with its SHA-256) and the CLIP text encoder the multimodal one needs (downloaded
from the Hugging Face hub, or a folder copied from another computer)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .. import settings
from ..i18n import tr
from ..models import capabilities_text, describe, list_packages
from ..worker_client import Job
from .jobs import JobsTask
from .runner import AlgorithmRun

COLUMNS = ["Name", "Can do", "Classes", "File"]
# The CLIP text encoder's files (the backend's geolink.osm.clip_text.CLIP_FILES, checked by tests/test_contract.py).
CLIP_FILES = ("config.json", "model.safetensors", "vocab.json", "merges.txt", "tokenizer.json",
              "tokenizer_config.json", "special_tokens_map.json")
# The official checkpoints, as the authors publish them in their repository's README.
PAPER_CODE = "https://github.com/bailubin/GeoLink_NeurIPS2025"
IMAGE_ONLY = ("https://drive.google.com/file/d/12u0goOohBYHjlkKIs11bVeTYyscd2Z9g/view?usp=drive_link",
              "https://disk.pku.edu.cn/link/AACFE5713FC4724F92B07DF68FF2FCB2D6")
MULTIMODAL = ("https://drive.google.com/file/d/1bAeNurdrH9nEI7qzwNWyLBWBSZnfwj_9/view?usp=drive_link",
              "https://disk.pku.edu.cn/link/AA0C4453EBBA4D4C979FA737047555ACDA")


def _links(pair) -> str:
    return f'<a href="{pair[0]}">Google Drive</a> · <a href="{pair[1]}">PKU Disk</a>'


def _rich_label(html: str) -> QLabel:
    """A wrapping label of rich text whose links open in the browser."""
    label = QLabel(html)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.RichText)
    label.setOpenExternalLinks(True)
    return label


class ModelsDialog(QDialog):
    def __init__(self, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.setWindowTitle(tr("GeoLink models"))
        self.resize(820, 760)
        self.models = []
        self.run: Optional[AlgorithmRun] = None
        self.task: Optional[JobsTask] = None

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels([tr(c) for c in COLUMNS])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        self.card = QPlainTextEdit()
        self.card.setReadOnly(True)

        self.import_button = QPushButton(tr("Import official checkpoint…"))
        self.sha256 = QLineEdit()
        self.sha256.setReadOnly(True)
        self.sha256.setPlaceholderText(tr("computed when a checkpoint is imported"))
        self.download_button = QPushButton(tr("Download (about 600 MB)"))
        self.folder_button = QPushButton(tr("Use a folder…"))
        self.encoder_state = QLabel()
        self.encoder_state.setWordWrap(True)
        self.encoder_state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setVisible(False)
        self.status = QLabel(tr("Imported and trained models go to {folder}").format(folder=settings.models_home()))
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setEnabled(False)
        refresh = QPushButton(tr("Refresh"))
        close = QPushButton(tr("Close"))

        layout = QVBoxLayout(self)
        layout.addWidget(self.table, 2)
        layout.addWidget(QLabel(tr("Card of the selected model:")))
        layout.addWidget(self.card, 2)
        layout.addWidget(self._official_box())
        layout.addWidget(self._encoder_box())
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        row = QHBoxLayout()
        row.addWidget(self.cancel_button)
        row.addWidget(refresh)
        row.addStretch(1)
        row.addWidget(close)
        layout.addLayout(row)

        self.table.itemSelectionChanged.connect(self.show_card)
        self.import_button.clicked.connect(self.ask_import)
        self.download_button.clicked.connect(self.download_text_encoder)
        self.folder_button.clicked.connect(self.ask_text_encoder_folder)
        self.cancel_button.clicked.connect(self.cancel)
        refresh.clicked.connect(self.refresh)
        close.clicked.connect(self.accept)
        self.refresh()

    def _official_box(self) -> QGroupBox:
        box = QGroupBox(tr("The official GeoLink weights"))
        about = _rich_label(tr(
            "The GeoLink authors publish two pretrained ViT-L/16 checkpoints, .pth files of about 1.2 GB each: "
            "<b>image only</b> ({image}) and <b>multimodal</b>, imagery with OpenStreetMap ({multimodal}), "
            "from <a href=\"{code}\">the paper's repository</a>. Download one with your web browser, then import "
            "it here: the file is checked (a file that is not a GeoLink checkpoint is refused), its SHA-256 is "
            "computed and written into the new model's card, and the model appears in the list above, ready for "
            "embeddings or as a base for training.").format(image=_links(IMAGE_ONLY),
                                                             multimodal=_links(MULTIMODAL), code=PAPER_CODE))
        row = QHBoxLayout()
        row.addWidget(self.import_button)
        row.addWidget(QLabel(tr("SHA-256:")))
        row.addWidget(self.sha256, 1)
        layout = QVBoxLayout(box)
        layout.addWidget(about)
        layout.addLayout(row)
        return box

    def _encoder_box(self) -> QGroupBox:
        box = QGroupBox(tr("Tag text encoder (CLIP ViT-B/16), for the multimodal weights"))
        about = _rich_label(tr(
            "The multimodal model reads OpenStreetMap tags through OpenAI's CLIP ViT-B/16 text encoder "
            "(<a href=\"https://huggingface.co/openai/clip-vit-base-patch16\">openai/clip-vit-base-patch16</a> "
            "on the Hugging Face hub). <i>Download</i> fetches only the files it needs. Without internet, copy "
            "those files from another computer into one folder ({files}) and choose it with "
            "<i>Use a folder…</i>").format(files=", ".join(CLIP_FILES)))
        row = QHBoxLayout()
        row.addWidget(self.download_button)
        row.addWidget(self.folder_button)
        row.addStretch(1)
        layout = QVBoxLayout(box)
        layout.addWidget(about)
        layout.addWidget(self.encoder_state)
        layout.addLayout(row)
        return box

    # ------------------------------------------------------------ the model list

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
            self.show_card()  # also when row 0 was selected before: the list may have changed under it
        else:
            self.card.setPlainText(tr("No model packages found. Import an official GeoLink checkpoint, or train one "
                                      "with 'Train classifier from labelled polygons'."))
        self.show_text_encoder()

    def show_card(self) -> None:
        rows = self.table.selectionModel().selectedRows()
        if rows:
            self.card.setPlainText(describe(self.models[rows[0].row()]["card"]))

    def show_text_encoder(self) -> None:
        folder = settings.tag_encoder_folder()
        if not folder:
            text = tr("Not set up on this computer yet.")
        elif (Path(folder) / "config.json").is_file() or "HF_HUB_CACHE" in settings.clip_env(folder):
            text = tr("Set up: {folder}").format(folder=folder)
        else:
            text = tr("The folder in the GeoLink settings holds no text encoder: {folder}").format(folder=folder)
        self.encoder_state.setText(text)

    # ------------------------------------------------------------ one background job at a time

    def _busy(self, busy: bool) -> None:
        for button in (self.import_button, self.download_button, self.folder_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)
        self.progress.setVisible(busy)
        if busy:
            self.progress.setValue(0)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setStyleSheet("color:#a00;" if error else "")

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()
        if self.task is not None:
            self.task.cancel()
        self._say(tr("Stopping…"))

    # ------------------------------------------------------------ importing a checkpoint

    def ask_import(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, tr("Official GeoLink checkpoint"), "",
                                              tr("PyTorch checkpoint (*.pth *.pt);;All files (*.*)"))
        if path:
            self.import_checkpoint(path)

    def import_checkpoint(self, path: str, out: str = "") -> AlgorithmRun:
        """Run geolink:importcheckpoint in the background (its SHA-256 first, with progress; Cancel stops it);
        the list refreshes when it is done."""
        params = {"INPUT": path}
        if out:
            params["OUTPUT"] = out
        self.sha256.clear()
        self.run = AlgorithmRun("geolink:importcheckpoint", params, parent=self)
        self.run.progress.connect(self._progress)
        self.run.message.connect(lambda text, error: self._say(text) if not error else None)
        self.run.finished.connect(self._imported)
        self._busy(True)
        self._say(tr("Importing {name}…").format(name=Path(path).name))
        self.run.start()
        return self.run

    def _imported(self, ok: bool, results: dict, error: str) -> None:
        self.run = None
        self._busy(False)
        if not ok:
            self._say(tr("Import cancelled: nothing was written.") if error == tr("Cancelled.")
                      else tr("Import failed: {error}").format(error=error), error=error != tr("Cancelled."))
            return
        self.sha256.setText(results.get("SHA256", ""))
        text = tr("Imported as “{name}”: {path}.").format(name=results.get("MODEL_NAME"), path=results.get("OUTPUT"))
        if results.get("TEXT_ENCODER") == "clip" and not settings.tag_encoder_folder():
            text += " " + tr("It reads OpenStreetMap tags with CLIP: set up the tag text encoder below before "
                             "using it with OSM.")
        self._say(text)
        self.refresh()
        for row, m in enumerate(self.models):
            if m["path"] == results.get("OUTPUT"):
                self.table.selectRow(row)
                self.show_card()

    # ------------------------------------------------------------ the CLIP text encoder

    def download_text_encoder(self) -> JobsTask:
        """`geolink text-encoder fetch` in the background: only the needed files, at a pinned revision; offline, the
        error says what to copy from another computer."""
        return self._text_encoder_job({"action": "fetch"}, tr("Downloading the CLIP text encoder…"))

    def ask_text_encoder_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, tr("Folder with the CLIP text encoder's files"))
        if folder:
            self.use_text_encoder_folder(folder)

    def use_text_encoder_folder(self, folder: str) -> JobsTask:
        """Check the folder in the backend (its files, then a few tags embedded with it) and use it if it passes."""
        return self._text_encoder_job({"action": "check", "folder": folder},
                                      tr("Checking the CLIP text encoder in {folder}…").format(folder=folder))

    def _text_encoder_job(self, config: dict, what: str) -> JobsTask:
        self.task = JobsTask("GeoLink: " + what, [Job(task="text-encoder", config=config, env=settings.worker_env())],
                             self._text_encoder_done)
        self.task.progressChanged.connect(self._progress)  # bound methods: delivered on the dialog's thread
        self.task.message.connect(self._say)
        self._busy(True)
        self._say(what)
        QgsApplication.taskManager().addTask(self.task)
        return self.task

    def _progress(self, pct: float) -> None:
        self.progress.setValue(int(pct))

    def _text_encoder_done(self, ok: bool, result: dict, error: str) -> None:
        self.task = None
        self._busy(False)
        if ok:
            folder = (result.get("outputs") or {}).get("folder", "")
            settings.set_tag_encoder_folder(folder)
            dim = (result.get("figures") or {}).get("dim")
            self._say(tr("The CLIP text encoder is ready ({dim}-d tag embeddings) and set in the GeoLink settings: "
                         "{folder}").format(dim=dim, folder=folder))
        elif error == tr("Cancelled."):
            self._say(tr("Stopped. A download resumes where it stopped when you click Download again."))
        else:
            self._say(error, error=True)
        self.show_text_encoder()
