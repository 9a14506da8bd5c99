"""Model packages as the plugin sees them: files in the model folders and the card in their header.

A package is a `.safetensors` file whose header metadata holds its JSON card under
"geolink_card". Reading the header takes a few bytes and no ML library, so the dialog
can list models instantly without starting the backend.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterable, List, Optional

CARD_KEY = "geolink_card"
MAX_HEADER = 100 * 1024**2


def read_card(path: Path) -> Optional[dict]:
    """The package's card, or None when the file is not a GeoLink model package."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > MAX_HEADER:
                return None
            header = json.loads(f.read(size))
        return json.loads(header["__metadata__"][CARD_KEY])
    except (OSError, KeyError, TypeError, ValueError, struct.error):
        return None


def list_packages(folders: Iterable[str]) -> List[dict]:
    """Every package in the folders, first folder first: name, path, task, classes and the card."""
    found, seen = [], set()
    for folder in folders:
        d = Path(folder)
        for path in sorted(d.glob("*.safetensors")) if d.is_dir() else []:
            card = read_card(path)
            if card is None or path.stem in seen:
                continue
            seen.add(path.stem)
            head = card.get("head") or {}
            found.append({"name": path.stem, "path": str(path), "card": card,
                          "task": head.get("type") or "encoder", "can": capabilities(card),
                          "classes": [c.get("name", "") for c in head.get("classes", []) if isinstance(c, dict)]})
    return found


def capabilities(card: dict) -> List[str]:
    """The tasks a package can serve: a head with classes classifies and maps zones; every GeoLink package
    gives embeddings and is a base for training."""
    head = card.get("head") or {}
    per_pixel = head.get("type", "segmentation") in ("segmentation", "seg", "classification")
    classes = head.get("classes") if per_pixel else []
    return (["classify", "zones"] if classes else []) + ["embed", "finetune"]


def suitable(packages: List[dict], task: str) -> List[dict]:
    """The packages a task can use (the tasks not about a model accept any)."""
    return [m for m in packages if task not in ("classify", "zones", "embed", "finetune") or task in m["can"]]


def capabilities_text(can: List[str]) -> str:
    if "classify" in can:
        return "classify, zones, embed, base for training"
    return "embed only (and a base for training)"


def describe(card: dict) -> str:
    """A card as readable text for the model manager: a summary, then the whole card."""
    head = card.get("head") or {}
    text = card.get("text_encoder") or {}
    lines = [f"Architecture: {card.get('architecture', '?')}, input {card.get('input_size', '?')} px",
             "Bands: " + ", ".join(map(str, card.get("bands") or [])),
             "Ground sample distance: " + (f"{card['gsd']:g} m (rasters at other resolutions are resampled to it)"
                                            if card.get("gsd") else "not given (rasters run at their own)"),
             "Can do: " + capabilities_text(capabilities(card)),
             f"OSM tag encoder: {text.get('name') or 'none (image only)'}",
             f"Task head: {head.get('type') or 'none (encoder only: embeddings, or a base for training)'}"]
    classes = head.get("classes") or []
    if classes:
        lines.append("Classes: " + ", ".join(f"{c.get('name')} {c.get('color', '')}".strip() for c in classes))
    for key, value in (card.get("provenance") or {}).items():
        if isinstance(value, (str, int, float)):
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n\nFull card:\n" + json.dumps(card, indent=2, ensure_ascii=False, default=str)
