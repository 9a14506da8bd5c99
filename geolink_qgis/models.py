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


def head_text(head: dict) -> str:
    """The task head in words: its type, decoder and, when it averages several, how many decoders."""
    if not head.get("type"):
        return "none (encoder only: embeddings, or a base for training)"
    members = head.get("members") if isinstance(head.get("members"), int) else 1
    parts = [str(head["decoder"])] if head.get("decoder") else []
    parts += [f"{members} decoders averaged"] if members > 1 else []
    return head["type"] + (f" ({', '.join(parts)})" if parts else "")


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
             f"Task head: {head_text(head)}"]
    classes = head.get("classes") or []
    if classes:
        lines.append("Classes: " + ", ".join(f"{c.get('name')} {c.get('color', '')}".strip() for c in classes))
    for key, value in (card.get("provenance") or {}).items():
        if isinstance(value, (str, int, float)):
            lines.append(f"{key}: {value}")
    return "\n".join(lines) + "\n\nFull card:\n" + json.dumps(card, indent=2, ensure_ascii=False, default=str)


def new_model_path(name: str, folder: Optional[Path] = None) -> Path:
    """Where a new model called after `name` (a label layer, a checkpoint) goes: the GeoLink model folder, never
    over an existing package ("my-labels.safetensors", then "my-labels-2.safetensors", ...)."""
    from .settings import models_home

    home = Path(folder) if folder else models_home()
    home.mkdir(parents=True, exist_ok=True)
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in name).strip("-") or "model"
    path, i = home / f"{stem}.safetensors", 2
    while path.exists():
        path, i = home / f"{stem}-{i}.safetensors", i + 1
    return path


def is_demo(card: dict) -> bool:
    """Whether the card says the model is a demonstration (a `demo` flag, or "demonstration" in its summary).
    A model fine-tuned here is the user's own: its card carries the base model's summary, which is not its own."""
    provenance = card.get("provenance") if isinstance(card.get("provenance"), dict) else {}
    flag = card.get("demo", provenance.get("demo"))
    if flag is not None:
        return bool(flag)
    if provenance.get("task") == "finetune":
        return False
    return "demonstration" in str(provenance.get("summary", "")).lower()


def summary(card: Optional[dict]) -> str:
    """What a model is, in two or three short lines for the main dialog: its task and classes, the bands and
    ground sample distance it expects, where it comes from, and whether it is a demonstration. Tolerates
    missing and new fields."""
    if not card:
        return ""
    from .i18n import tr

    head = card.get("head") if isinstance(card.get("head"), dict) else {}
    classes = [str(c.get("name")) for c in head.get("classes") or [] if isinstance(c, dict) and c.get("name")]
    if classes:
        what = tr("Land-cover model, {n} classes: {names}").format(n=len(classes), names=", ".join(classes))
    else:
        what = tr("Encoder only (embeddings, or a base to train a classifier on)")
    bands = ", ".join(map(str, card.get("bands") or [])) or "?"
    gsd = card.get("gsd")
    where = tr("Bands {bands}; {gsd}").format(
        bands=bands, gsd=tr("{gsd:g} m pixels").format(gsd=float(gsd)) if isinstance(gsd, (int, float)) and gsd
        else tr("any pixel size (the raster's own)"))
    lines = [what, where]
    provenance = card.get("provenance") if isinstance(card.get("provenance"), dict) else {}
    if provenance.get("task") == "finetune":
        scores = next((provenance[k] for k in ("test", "validation") if isinstance(provenance.get(k), dict)), {})
        iou = scores.get("mean_iou")
        data = provenance.get("training_data") if isinstance(provenance.get("training_data"), dict) else {}
        base = provenance.get("base_model")
        base = base.get("name") if isinstance(base, dict) else base  # {name, file, architecture}; older cards: a path
        lines.append(tr("Trained on “{labels}” over “{raster}” from {base}{demo}").format(
            labels=data.get("labels") or provenance.get("labels") or "?", raster=data.get("raster") or "?",
            base=Path(str(base)).stem if base else "?",
            demo=tr(" (a demonstration encoder)") if base == "default" else "")
            + (tr("; held-out mean IoU {iou:.2f}").format(iou=iou) if isinstance(iou, (int, float)) else "") + ".")
    elif is_demo(card):
        lines.append(tr("A demonstration model: for trying the tools, not for accurate maps."))
    return "\n".join(lines)
