"""The model card: what a model package says about itself, typed and validated, read and written here only.

A package is one `.safetensors` file; its header metadata holds the card as JSON under CARD_KEY:
    format, name, architecture, config (GeoLinkConfig), text_encoder {name, dim} (null: image only), bands,
    normalisation {scale, mean, std, ...}, gsd (metres or null), input_size, patch_size, layers,
    head (null, or {type: "segmentation", decoder, layers, num_classes, classes: [{name, color}]}), provenance.
This module needs no torch: the model store and the doctor read cards without loading a model.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from ..errors import InputError, ModelError, cmd

CARD_KEY = "geolink_card"
FORMAT = "geolink-model/1"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TEXT_ENCODER_DIMS = {"minilm": 384, "clip": 512}  # the named tag text encoders and their embedding widths
HEAD_TYPES = ("segmentation", "seg", "classification")  # heads that give per-pixel class logits
DECODERS = ("detail", "fpn", "upernet", "linear")  # a segmentation head's decoder; the first is the default
LEGACY_KEYS = {"normalization": "normalisation", "img_size": "input_size"}
NOT_NULL = ("config", "bands", "normalisation", "input_size", "patch_size", "layers", "provenance")


@dataclass
class ModelCard:
    """A package's card. Absent fields take these defaults: RGB bands, the raster's own stretch, no head."""

    config: Dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    name: Optional[str] = None
    architecture: Optional[str] = None
    text_encoder: Optional[Dict[str, Any]] = None
    bands: List[str] = field(default_factory=lambda: ["red", "green", "blue"])
    normalisation: Dict[str, Any] = field(default_factory=dict)
    gsd: Optional[float] = None
    input_size: int = 224
    patch_size: int = 16
    layers: List[int] = field(default_factory=list)
    head: Optional[Dict[str, Any]] = None
    provenance: Dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if isinstance(self.bands, int):  # an early card gave only the band count
            self.bands = [f"band{i + 1}" for i in range(self.bands)]
        self.bands = [str(b) for b in self.bands]
        self.gsd = float(self.gsd) if self.gsd else None
        self.input_size, self.patch_size = int(self.input_size or 224), int(self.patch_size or 16)
        self.normalisation = dict(self.normalisation or {})
        self.provenance = dict(self.provenance or {})
        if not isinstance(self.config, dict):
            raise ModelError(f"The model card's config must be an object, got {type(self.config).__name__}.")
        if self.input_size % self.patch_size:
            raise ModelError(f"The model card's input size {self.input_size} is not a multiple of its patch size "
                             f"{self.patch_size}.")

    @classmethod
    def for_model(cls, model, **fields) -> ModelCard:
        """A complete card for a GeoLinkModel (RGB, ImageNet normalisation, no head), updated with `fields`."""
        c = model.config
        text = {"name": text_encoder_name(c.text_dim), "dim": c.text_dim} if c.osm else None
        imagenet = {"scale": 255.0, "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}
        base = dict(architecture=c.arch, config=c.to_dict(), text_encoder=text,
                    bands=["red", "green", "blue"][: c.in_chans], normalisation=imagenet, input_size=c.img_size,
                    layers=list(model.layers))
        return cls(**{**base, **fields})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], what: str = "The model") -> ModelCard:
        """A card from its JSON form; older key names are read, an unknown format or field is refused."""
        values = {LEGACY_KEYS.get(k, k): v for k, v in values.items()}
        if values.get("format") != FORMAT or not isinstance(values.get("config"), dict):
            raise ModelError(f"{what} was written in an unknown package format ({values.get('format')!r}).")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ModelError(f"{what}'s card has unknown field(s): {', '.join(unknown)}.",
                             hint="The package was written by a newer GeoLink; update the backend.")
        return cls(**{k: v for k, v in values.items() if v is not None or k not in NOT_NULL})

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def replace(self, **fields) -> ModelCard:
        """A copy with `fields` changed (the nested dicts copied, so neither card changes the other)."""
        return dataclasses.replace(ModelCard(**self.to_dict()), **fields)

    def header(self) -> Dict[str, str]:
        """The safetensors header metadata that carries this card."""
        return {CARD_KEY: json.dumps(self.to_dict())}

    @property
    def classes(self) -> List[dict]:
        """The head's classes [{name, color}] (empty without a head)."""
        return [dict(c) for c in (self.head or {}).get("classes") or []]

    @property
    def predicts_classes(self) -> bool:
        """Whether the head gives per-pixel class logits for named classes."""
        return bool(self.classes) and str((self.head or {}).get("type", "segmentation")) in HEAD_TYPES

    @property
    def text_encoder_name(self) -> Optional[str]:
        """The tag text encoder the OSM branch was trained with: the card's name for it, else the named encoder
        of its width; None for an image-only model (or a width no named encoder has)."""
        spec = self.text_encoder
        if isinstance(spec, dict):
            spec = spec.get("name") or text_encoder_name(spec.get("dim"))
        return str(spec) if spec else None


def text_encoder_name(dim: int) -> Optional[str]:
    """The named text encoder of embedding width `dim`, if one has it."""
    return next((name for name, d in TEXT_ENCODER_DIMS.items() if d == dim), None)


def read_card(path: os.PathLike) -> ModelCard:
    """The card of a model package, from the safetensors header alone (no weights loaded)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > 100 * 1024**2:
                raise ValueError("header too large")
            header = json.loads(f.read(size))
        values = json.loads(header["__metadata__"][CARD_KEY])
    except FileNotFoundError:
        raise InputError(f"Model file not found: {path}") from None
    except (KeyError, ValueError, TypeError, struct.error, json.JSONDecodeError):
        raise ModelError(f"{path} is not a GeoLink model package (no card in its header).",
                         hint=f"Import official checkpoints first with {cmd('import-checkpoint')}.") from None
    if not isinstance(values, dict):
        raise ModelError(f"{path} is not a GeoLink model package (its card is not an object).")
    return ModelCard.from_dict(values, path.name)
