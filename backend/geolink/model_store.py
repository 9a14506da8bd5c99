"""Where model packages live, and finding one by name (`--model default`).

A model package is one `.safetensors` file with its card in the header (models/card.py).
Folders searched, in order: those passed in, GEOLINK_MODEL_DIRS
(os.pathsep-separated), the user's model folder, and `resources/models` of the source tree.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, List, Optional

from .errors import InputError, ModelError, opt

if TYPE_CHECKING:
    from .progress import Progress

SOURCE_MODELS = Path(__file__).resolve().parents[2] / "resources" / "models"


def user_model_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA", Path.home())) / "geolink" / "models"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "geolink" / "models"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "geolink" / "models"


def model_dirs(extra: Iterable[str] = ()) -> List[Path]:
    dirs = [Path(d) for d in extra if d]
    dirs += [Path(d) for d in os.environ.get("GEOLINK_MODEL_DIRS", "").split(os.pathsep) if d]
    dirs += [user_model_dir(), SOURCE_MODELS]
    seen, unique = set(), []
    for d in dirs:
        key = str(d.resolve()) if d.exists() else str(d)
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def sha256_of(path: os.PathLike, progress: Optional[Progress] = None) -> str:
    """SHA-256 of a file, read in 1 MB blocks (model packages and checkpoints are large); with `progress`, each
    percent read is reported and a cancel stops it."""
    digest = hashlib.sha256()
    total, done, shown = max(os.path.getsize(path), 1), 0, -1
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
            done += len(block)
            if progress is not None and int(100 * done / total) > shown:
                shown = int(100 * done / total)
                progress.update(shown, f"SHA-256 of {Path(path).name}: {done / 1e6:,.0f} of {total / 1e6:,.0f} MB")
    return digest.hexdigest()


def list_models(extra: Iterable[str] = ()) -> List[dict]:
    """Every readable package in the model folders: name, path, and a short summary of its card. A name is
    listed once, from the first folder holding it: the package that `resolve_model` picks."""
    from .models.card import read_card

    found, names = [], set()
    for d in model_dirs(extra):
        for path in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
            if path.stem in names:
                continue
            try:
                card = read_card(path)
            except (InputError, ModelError):
                continue
            names.add(path.stem)
            found.append({"name": path.stem, "path": str(path), "architecture": card.architecture,
                          "task": (card.head or {}).get("type") or "encoder",
                          "classes": [c["name"] for c in card.classes]})
    return found


def resolve_model(name_or_path: str, extra: Iterable[str] = ()) -> Path:
    """A path as given, or the package called `name` in the model folders."""
    candidate = Path(name_or_path)
    if candidate.suffix and candidate.exists():
        return candidate
    for d in model_dirs(extra):
        p = d / f"{name_or_path}.safetensors"
        if p.exists():
            return p
    known = ", ".join(m["name"] for m in list_models(extra)) or "none"
    raise InputError(f"Model {name_or_path!r} not found.",
                     hint=f"Set {opt('model')} to a .safetensors or .pth path, or one of the installed models: "
                          f"{known}.")

