"""Tag maps: which OSM tags make which class, for training from OpenStreetMap.

A tag map is JSON: `{"classes": [{"name": "water", "color": "#1f78b4", "tags": ["natural=water", "water=*"]}, ...]}`.
A tag is `key=value` (that exact tag) or `key=*` (any value of the key); `building=yes` also matches
the GeoLink label piece `building:building` the readers make of it (tags.py). A feature's class is
the FIRST class with a tag the feature has, so the order of the classes settles conflicting tags.
Built in (package data `data/tagmap_<name>.json`): `landcover` and `urban-function` (the GeoLink
urban-function-zone classes).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Sequence, Tuple

import numpy as np

from ..errors import InputError
from .tags import label_pieces, piece_key, tag_piece

DATA = Path(__file__).resolve().parents[1] / "data"
BUILT_IN = ("landcover", "urban-function")
_KEY = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_:.\-]*$")
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")
UNMATCHED = -1


@dataclass
class TagMap:
    """Classes [{name, color, tags}] in priority order, and where the map came from (a built-in name or a path)."""

    classes: List[dict]
    source: str

    @property
    def class_names(self) -> List[str]:
        return [c["name"] for c in self.classes]

    def __post_init__(self) -> None:
        self._exact: Dict[str, int] = {}
        self._any: Dict[str, int] = {}
        for i, cls in enumerate(self.classes):
            for tag in cls["tags"]:
                key, value = tag.split("=", 1)
                if value == "*":
                    self._any.setdefault(key.replace(":", " "), i)
                else:
                    self._exact.setdefault(tag_piece(key, value), i)

    def match(self, label: str) -> int:
        """The class index of a feature with this GeoLink label (`key:value;...`), UNMATCHED when none."""
        best = UNMATCHED
        for piece in label_pieces(label):
            hit = min(self._exact.get(piece, len(self.classes)), self._any.get(piece_key(piece), len(self.classes)))
            if hit < len(self.classes) and (best == UNMATCHED or hit < best):
                best = hit
        return best

    def match_all(self, labels: Iterable[str]) -> np.ndarray:
        return np.array([self.match(label) for label in labels], dtype=np.int64)

    def to_json(self) -> dict:
        return {"classes": [{"name": c["name"], "color": c["color"], "tags": list(c["tags"])} for c in self.classes]}


def load_tag_map(name_or_path: str) -> TagMap:
    """A built-in map by name, or a JSON file; refused with a plain message when it is not a valid tag map."""
    if name_or_path in BUILT_IN:
        path = DATA / f"tagmap_{name_or_path}.json"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise InputError(f"Tag map {name_or_path!r} is neither a built-in map nor a file.",
                             hint="Built-in maps: " + ", ".join(BUILT_IN) + "; or give a .json file.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"The tag map {path.name} is not valid JSON: {exc}.",
                         hint='Expected {"classes": [{"name": "water", "color": "#1f78b4", '
                              '"tags": ["natural=water"]}, ...]}.') from None
    return parse_tag_map(data, name_or_path if name_or_path in BUILT_IN else str(path))


def parse_tag_map(data: object, source: str) -> TagMap:
    """Check a tag map's JSON object; every problem is named with its class and tag."""
    where = f"The tag map {Path(source).name}"
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise InputError(f'{where} needs a non-empty "classes" list.',
                         hint='Expected {"classes": [{"name": ..., "color": "#rrggbb", "tags": ["key=value"]}]}.')
    classes, names = [], set()
    for n, cls in enumerate(data["classes"], start=1):
        if not isinstance(cls, dict) or not str(cls.get("name") or "").strip():
            raise InputError(f"{where}: class {n} has no name.")
        name = str(cls["name"]).strip()
        if name in names:
            raise InputError(f"{where}: class {name!r} appears twice.", hint="Put all its tags in one class.")
        names.add(name)
        color = str(cls.get("color") or "")
        if color and not _COLOUR.match(color):
            raise InputError(f"{where}: class {name!r} has colour {color!r}, not #rrggbb.")
        tags = cls.get("tags")
        if not isinstance(tags, list) or not tags:
            raise InputError(f"{where}: class {name!r} has no tags.", hint='Give e.g. "tags": ["natural=water"].')
        for tag in tags:
            check_tag(tag, name, where)
        classes.append({"name": name, "color": color, "tags": [str(t).strip() for t in tags]})
    return TagMap(classes, source)


def check_tag(tag: object, class_name: str, where: str) -> None:
    text = str(tag).strip() if isinstance(tag, str) else ""
    key, _, value = text.partition("=")
    if not text or "=" not in text or not _KEY.match(key) or not value or ("*" in value and value != "*"):
        raise InputError(f"{where}: class {class_name!r} has the tag {tag!r}, which is not in the form key=value "
                         "or key=*.", hint='Write OSM tags as "natural=water" or "building=*".')
    if value != "*" and tag_piece(key, value) is None:
        raise InputError(f"{where}: class {class_name!r} uses the tag {text!r}, which the OSM readers leave out "
                         "(names, references and other identifiers carry no land use).")


def most_common_tags(labels: Sequence[str], n: int = 10) -> List[Tuple[str, int]]:
    """The n most frequent tags (as key=value) among the labels, for telling a user what their OSM holds."""
    counts: Counter = Counter()
    for label in labels:
        for piece in label_pieces(label):
            key, _, value = piece.partition(":")
            counts[f"{key.replace(' ', ':')}={'yes' if value == key else value}"] += 1
    return counts.most_common(n)

