"""The model side of pretraining: a fresh GeoLink or one to continue from, and the output package."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from ..errors import ModelError


def text_dim_of(encoder_name: str) -> int:
    """Width of the tag text embedding of a text encoder spec ('minilm', 'clip' or a model folder)."""
    from ..models.card import TEXT_ENCODER_DIMS
    from ..osm.text import get_text_encoder

    if encoder_name in TEXT_ENCODER_DIMS:
        return TEXT_ENCODER_DIMS[encoder_name]

    return int(get_text_encoder(encoder_name).dim)


def build_model(arch: str, init: Optional[str], text_encoder: str, image_size: int):
    """A GeoLinkModel with its pretraining parts: fresh, or continued from a checkpoint or package (`init`).

    A package saved encoder-only (or with a task head) gets new pretraining parts around its encoder.
    """
    from ..models import GeoLinkConfig, GeoLinkModel, create_geolink, load_model

    if not init:
        return create_geolink(arch=arch, text_dim=text_dim_of(text_encoder), img_size=image_size)
    model = load_model(init)
    model = getattr(model, "encoder", model)
    if not isinstance(model, GeoLinkModel):
        raise ModelError(f"{init} does not hold a GeoLink encoder to continue pretraining from.")
    if not model.has_osm:
        raise ModelError(f"{init} is an image-only GeoLink; pretraining needs the OSM pathway.",
                         hint="Start from the multimodal checkpoint or a GeoLink package.")
    if not model.has_pretraining_parts:
        config = GeoLinkConfig.from_dict({**model.config.to_dict(), "pretraining": True})
        full = GeoLinkModel(config, card=model.card)
        missing, unexpected = full.load_state_dict(model.state_dict(), strict=False)
        if unexpected:
            raise ModelError(f"{init}: unexpected weights {unexpected[:3]} when adding pretraining parts.")
        model = full
    return model


def model_info(model) -> Tuple[int, int]:
    """(text embedding width, native input size) of a GeoLinkModel."""
    return int(model.text_dim), int(model.config.img_size)


def write_package(model, path: Path, provenance: dict) -> Path:
    """The pretrained model as a package with its pretraining parts (so it can be continued with --init)."""
    from ..models import ModelCard, save_package

    old = model.card
    card = ModelCard.for_model(model, name=Path(path).stem, bands=old.bands, normalisation=old.normalisation,
                               gsd=old.gsd)
    return save_package(model, path, card, provenance=provenance)
