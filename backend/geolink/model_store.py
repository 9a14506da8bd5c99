"""Where model packages live, and finding one by name (`--model default`).

A model package is one `.safetensors` file whose header metadata holds the JSON card
under "geolink_card". Folders searched, in order: those passed in, GEOLINK_MODEL_DIRS
(os.pathsep-separated), the user's model folder, and `resources/models` of the source tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
from pathlib import Path
from typing import Iterable, List

from .errors import InputError, ModelError, cmd, opt

CARD_KEY = "geolink_card"
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


def sha256_of(path: os.PathLike) -> str:
    """SHA-256 of a file, read in 1 MB blocks (model packages and checkpoints are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(path: os.PathLike) -> dict:
    """The card of a model package, read from the safetensors header alone (no weights loaded)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 * 1024**2:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
        return json.loads(header["__metadata__"][CARD_KEY])
    except FileNotFoundError:
        raise InputError(f"Model file not found: {path}") from None
    except (KeyError, ValueError, struct.error, json.JSONDecodeError):
        raise ModelError(f"{path} is not a GeoLink model package (no card in its header).",
                         hint=f"Import official checkpoints first with {cmd('import-checkpoint')}.") from None


def list_models(extra: Iterable[str] = ()) -> List[dict]:
    """Every readable package in the model folders: name, path, and a short summary of its card. A name is
    listed once, from the first folder holding it: the package that `resolve_model` picks."""
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
            head = card.get("head") or {}
            found.append({"name": path.stem, "path": str(path), "architecture": card.get("architecture"),
                          "task": head.get("type") or "encoder",
                          "classes": [c["name"] for c in head.get("classes", [])]})
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

