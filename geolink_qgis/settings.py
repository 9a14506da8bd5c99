"""The plugin's settings (QgsSettings under "geolink/") and the backend interpreter they select."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List

from qgis.core import QgsApplication, QgsSettings

from .backend_installer import BackendState, backend_state, venv_python
from .paths import resources_dir

PREFIX = "geolink/"
CLIP_CACHE_FOLDER = "models--openai--clip-vit-base-patch16"  # the backend's CLIP_REPO in a Hugging Face cache
DEVICES = ["auto", "cpu", "cuda", "mps"]


def _get(key: str, default: str = "") -> str:
    return str(QgsSettings().value(PREFIX + key, default) or default)


def _set(key: str, value: str) -> None:
    QgsSettings().setValue(PREFIX + key, value)


def default_venv() -> Path:
    """Where "Install backend" puts the backend's environment: in the QGIS profile folder."""
    return Path(QgsApplication.qgisSettingsDirPath()) / "geolink" / "venv"


def backend_python() -> str:
    """GEOLINK_BACKEND_PYTHON, else the configured interpreter, else the venv the plugin installed."""
    return os.environ.get("GEOLINK_BACKEND_PYTHON") or _get("backend_python") or str(venv_python(default_venv()))


def backend_status() -> BackendState:
    """Whether the backend is installed, missing or incomplete (an install that did not finish): the dialog's
    banner, the settings, Check backend and every algorithm ask this."""
    return backend_state(backend_python(), default_venv())


def configured_backend_python() -> str:
    """The interpreter chosen in the settings dialog ('' when none)."""
    return _get("backend_python")


def set_backend_python(path: str) -> None:
    _set("backend_python", path)


def device() -> str:
    value = _get("device", "auto")
    return value if value in DEVICES else "auto"


def set_device(value: str) -> None:
    _set("device", value)


def model_folder() -> str:
    return _get("model_folder")


def set_model_folder(path: str) -> None:
    _set("model_folder", path)


def tag_encoder_folder() -> str:
    return _get("tag_encoder_folder")


def set_tag_encoder_folder(path: str) -> None:
    _set("tag_encoder_folder", path)


def models_home() -> Path:
    """Where imported and trained models go: the model folder setting, else a folder in the QGIS profile."""
    return Path(model_folder()) if model_folder() else Path(QgsApplication.qgisSettingsDirPath()) / "geolink" / "models"


def model_dirs() -> List[str]:
    """Folders the backend searches for model packages: the user's, then the bundled ones."""
    return [str(models_home()), str(resources_dir() / "models")]


def worker_env() -> Dict[str, str]:
    """Environment for backend jobs: where the models are, and the tag text encoder's folder when set."""
    dirs = model_dirs() + [d for d in os.environ.get("GEOLINK_MODEL_DIRS", "").split(os.pathsep) if d]
    env = {"GEOLINK_MODEL_DIRS": os.pathsep.join(dirs)}
    env.update(clip_env(tag_encoder_folder()))
    return env


def clip_env(folder: str) -> Dict[str, str]:
    """Where the backend finds the CLIP text model: a Hugging Face cache (HF_HUB_CACHE) or a saved model folder."""
    if not folder:
        return {}
    path = Path(folder)
    for cache in (path, path / "hub"):
        if (cache / CLIP_CACHE_FOLDER).is_dir():
            return {"HF_HUB_CACHE": str(cache)}
    return {"GEOLINK_CLIP_DIR": str(path)}
