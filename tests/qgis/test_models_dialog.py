"""The model manager in real QGIS widgets (offscreen) with the real backend: importing a checkpoint in the official
layout (its SHA-256 with progress, into the card; cancel; a wrong file refused in QGIS's words) and the CLIP text
encoder of the multimodal weights (a folder made here; the hub offline)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from geolink_qgis import settings

from .test_ui import wait_for


@pytest.fixture()
def dialog(qgis_app, tmp_path, monkeypatch):
    from geolink_qgis.ui.models_dialog import ModelsDialog

    monkeypatch.setattr(settings, "model_folder", lambda: str(tmp_path / "models"))
    chosen = {"folder": ""}  # the "Tag encoder folder (CLIP)" setting, kept out of the user's QGIS settings
    monkeypatch.setattr(settings, "tag_encoder_folder", lambda: chosen["folder"])
    monkeypatch.setattr(settings, "set_tag_encoder_folder", lambda path: chosen.update(folder=path))
    for key, sub in (("XDG_DATA_HOME", "data"), ("GEOLINK_CACHE", "cache"), ("HF_HUB_CACHE", "hub")):
        monkeypatch.setenv(key, str(tmp_path / sub))  # the worker's folders: nothing from this machine's
    monkeypatch.delenv("GEOLINK_CLIP_DIR", raising=False)
    return ModelsDialog()


def idle(dialog) -> bool:
    return dialog.run is None and dialog.task is None


def official_checkpoint(path: Path) -> Path:
    pytest.importorskip("torch")
    from tests.backend.model_helpers import save_official_checkpoint

    return save_official_checkpoint(path)[3]


def test_import_shows_the_sha256_and_writes_it_into_the_card(dialog, tmp_path):
    src = official_checkpoint(tmp_path / "geolink_official.pth")
    seen = []
    dialog.progress.valueChanged.connect(seen.append)
    dialog.import_checkpoint(str(src))
    assert not dialog.import_button.isEnabled() and dialog.cancel_button.isEnabled()
    wait_for(lambda: idle(dialog))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert dialog.sha256.text() == sha, dialog.status.text()
    assert dialog.status.text().startswith("Imported as “geolink_official”")
    assert "set up the tag text encoder below" in dialog.status.text()  # multimodal: it needs CLIP
    assert any(0 < v <= 40 for v in seen)  # the hash's share of the bar moved
    names = [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]
    assert "geolink_official" in names
    dialog.table.selectRow(names.index("geolink_official"))
    assert f"source_sha256: {sha}" in dialog.card.toPlainText()
    assert dialog.import_button.isEnabled() and not dialog.cancel_button.isEnabled()


def test_a_file_that_is_not_a_checkpoint_is_refused_in_qgis_words(dialog, tmp_path):
    junk = tmp_path / "notes.pth"
    junk.write_text("meeting notes, not weights")
    dialog.import_checkpoint(str(junk))
    wait_for(lambda: idle(dialog))
    text = dialog.status.text()
    assert text.startswith("Import failed: notes.pth is not a GeoLink checkpoint: it is not a file saved by PyTorch")
    assert "Choose for “Official checkpoint” one of the two official GeoLink checkpoints" in text
    assert "SRC" not in text and not dialog.sha256.text()
    assert not list((tmp_path / "models").glob("*.safetensors"))


def test_cancel_stops_the_import_and_writes_nothing(dialog, tmp_path):
    src = official_checkpoint(tmp_path / "big.pth")
    dialog.import_checkpoint(str(src))
    dialog.cancel_button.click()
    wait_for(lambda: idle(dialog))
    assert dialog.status.text() == "Import cancelled: nothing was written."
    models = tmp_path / "models"
    assert not models.exists() or not list(models.iterdir())


def test_a_text_encoder_folder_is_checked_then_set(dialog, tmp_path):
    pytest.importorskip("transformers")
    from tests.backend.text_helpers import tiny_clip_folder

    folder = tiny_clip_folder(tmp_path / "copied from a USB stick")
    assert dialog.encoder_state.text() == "Not set up on this computer yet."
    dialog.use_text_encoder_folder(str(folder))
    wait_for(lambda: idle(dialog))
    assert settings.tag_encoder_folder() == str(folder), dialog.status.text()
    assert dialog.status.text().startswith("The CLIP text encoder is ready (32-d tag embeddings)")
    assert dialog.encoder_state.text() == f"Set up: {folder}"
    (folder / "model.safetensors").unlink()  # a folder missing its weights is refused, the setting kept
    dialog.use_text_encoder_folder(str(folder))
    wait_for(lambda: idle(dialog))
    assert "lacks model.safetensors" in dialog.status.text() and settings.tag_encoder_folder() == str(folder)


def test_download_offline_says_what_to_copy_and_where_to_choose_it(dialog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    dialog.download_text_encoder()
    wait_for(lambda: idle(dialog), timeout=90)
    text = dialog.status.text()
    assert "The Hugging Face hub cannot be reached from this computer" in text
    assert "model.safetensors" in text and "special_tokens_map.json" in text
    assert "choose it with “Use a folder…” under “Tag text encoder” in the GeoLink models dialog" in text
    assert "color:#a00" in dialog.status.styleSheet() and not settings.tag_encoder_folder()


def test_the_dialog_is_translatable(dialog):
    from qgis.PyQt.QtCore import QCoreApplication

    from geolink_qgis.ui.models_dialog import ModelsDialog

    from .test_i18n import Shouting

    translator = Shouting()
    QCoreApplication.installTranslator(translator)
    try:
        shouting = ModelsDialog()
        assert shouting.windowTitle() == "GEOLINK MODELS"
        assert shouting.import_button.text() == "IMPORT OFFICIAL CHECKPOINT…"
        assert shouting.encoder_state.text() == "NOT SET UP ON THIS COMPUTER YET."
    finally:
        QCoreApplication.removeTranslator(translator)


def test_download_through_the_hub_api_sets_the_folder(dialog, tmp_path, monkeypatch):
    """Download against a local stand-in for huggingface.co (the real hub is unreachable here): the worker's real
    huggingface_hub client fetches the files, the dialog shows progress and sets the folder it got."""
    pytest.importorskip("transformers")
    from geolink.osm import clip_text
    from tests.backend.test_text_encoder import FakeHub, clip_repository
    from tests.backend.text_helpers import tiny_clip_folder

    hub = FakeHub(clip_repository(tiny_clip_folder(tmp_path / "repository")), clip_text.CLIP_REVISION)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for key, value in (("HF_ENDPOINT", hub.url), ("HF_HUB_DISABLE_XET", "1"), ("GEOLINK_HUB_TIMEOUT", "5")):
        monkeypatch.setenv(key, value)
    seen = []
    dialog.progress.valueChanged.connect(seen.append)
    try:
        dialog.download_text_encoder()
        wait_for(lambda: idle(dialog), timeout=120)
    finally:
        hub.close()
    folder = tmp_path / "data" / "geolink" / "text-encoders" / "clip-vit-base-patch16"
    assert settings.tag_encoder_folder() == str(folder), dialog.status.text()
    assert (folder / "model.safetensors").is_file() and any(0 < v < 100 for v in seen)
    assert dialog.encoder_state.text() == f"Set up: {folder}"
