"""Model packages: one .safetensors file with the card (card.py) in its header; and `load_model`, the one way
to load any model file (a package, or an official checkpoint through checkpoint.py).

Weights may be stored as float16 (half the size); they are always loaded as float32.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_output
from ..errors import InputError, ModelError
from .card import ModelCard, read_card
from .checkpoint import build_loaded, load_official
from .config import GeoLinkConfig
from .geolink import GeoLinkModel
from .heads import GeoLinkSegmenter, build_segmenter

ALIAS_PREFIX = "patch_embed."  # a second name of img_encoder.patch_embed; stored once


def save_package(model: torch.nn.Module, path: os.PathLike, card: Optional[ModelCard] = None, *,
                 provenance: Optional[dict] = None, classes: Optional[Sequence[dict]] = None,
                 half: bool = False, encoder_only: bool = False) -> Path:
    """Write `model` (a GeoLinkModel or a segmenter) as a package, atomically.

    The card is `card`, else the model's own; its architecture, config and head are the model's.
    `provenance` is merged into it, `classes` ([{name, color}]) set on the head. `half` stores float16
    weights; `encoder_only` drops the pretraining parts (MAE decoder, graph readout, node reconstruction).
    """
    encoder = model.encoder if isinstance(model, GeoLinkSegmenter) else model
    if not isinstance(encoder, GeoLinkModel):
        raise ModelError(f"Cannot package a {type(model).__name__}; expected a GeoLink model.")
    card = (card if card is not None else model.card).replace()
    base = ModelCard.for_model(encoder)
    card.provenance = {**card.provenance, **(provenance or {})}
    state = {k: v for k, v in model.state_dict().items()
             if not k.startswith(ALIAS_PREFIX) and not k.startswith("encoder." + ALIAS_PREFIX)}
    config = dict(base.config)
    if encoder_only and encoder.has_pretraining_parts:
        config["pretraining"] = False
        with torch.device("meta"):
            keep = set(GeoLinkModel(GeoLinkConfig.from_dict(config)).state_dict())
        prefix = "encoder." if encoder is not model else ""
        state = {k: v for k, v in state.items() if not k.startswith(prefix) or k[len(prefix):] in keep}
    card.config, card.architecture, card.head = config, base.architecture, None
    if isinstance(model, GeoLinkSegmenter):
        card.head = {**model.head_card(), **({"classes": [dict(c) for c in classes]} if classes else {})}
    elif classes:
        raise ModelError("Classes were given for a model without a task head.")
    tensors = {}
    for k, v in state.items():
        v = v.detach().to("cpu").contiguous()
        if half and v.is_floating_point():
            v = v.half()
            if not torch.isfinite(v).all():
                raise ModelError(f"Weight {k} overflows float16; save the package in float32.")
        tensors[k] = v
    path = Path(path)
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata=card.header())
    return path


def load_package(path: os.PathLike) -> torch.nn.Module:
    """A package as a GeoLinkModel (or a segmenter when its card has a head), float32, eval mode."""
    path = Path(path)
    card = read_card(path)
    config = GeoLinkConfig.from_dict(card.config)
    head = card.head

    def make() -> torch.nn.Module:
        model = GeoLinkModel(config, card=card)
        if not head:
            return model
        return build_segmenter(model, head["decoder"], int(head.get("num_classes") or len(head["classes"])),
                               head.get("layers"), classes=head.get("classes"), members=int(head.get("members", 1)),
                               width=head.get("width"), group_channels=head.get("group_channels"))

    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ModelError(f"Cannot read the weights of {path.name}: {exc}") from exc
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    if head and head.get("decoder") == "detail" and any(k.startswith("head.detail.") for k in state):
        raise ModelError(f"{path.name} was fine-tuned with the first version of the detail head (a learnt "
                         "full-resolution path), which this version of GeoLink replaced by a guided filter.",
                         hint="Fine-tune it again from its base model (the same labels give the new head).")
    if head and head.get("decoder") != "linear" and "members" not in head:
        state = _single_decoder_as_member(state)
    prefix = "encoder." if head else ""
    for k in [k for k in state if k.startswith(prefix + "img_encoder.patch_embed.")]:
        state[prefix + k[len(prefix + "img_encoder."):]] = state[k]
    model = build_loaded(make, state, path.name)
    model.card = card
    return model.eval()


def _single_decoder_as_member(state: dict) -> dict:
    """The weights of a package written before heads had members: its one decoder is member 0."""
    old = ("head.decoder.", "head.classifier.")
    return {("head.members.0." + k[len("head."):] if k.startswith(old) else k): v for k, v in state.items()}


def load_model(path: os.PathLike, layers: Sequence[int] = ()) -> torch.nn.Module:
    """An official checkpoint (.pth/.pt) or a model package (.safetensors) as a torch module in eval mode."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"Model file not found: {path}")
    if path.suffix.lower() == ".safetensors":
        return load_package(path)
    if path.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        return load_official(path, layers)
    raise InputError(f"{path.name}: expected a model package (.safetensors) or an official checkpoint (.pth).")
