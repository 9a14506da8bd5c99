"""The base model a fine-tuning starts from."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError, ModelError, opt


def load_base(path: Path):
    """The base model: a GeoLink encoder, or a segmenter whose encoder is reused; anything else is refused."""
    from ..models import GeoLinkModel, GeoLinkSegmenter, load_model

    try:
        model = load_model(path)
    except ModelError as exc:
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune: {exc.message}",
                         hint=f"Choose a GeoLink encoder package, e.g. {opt('model', 'default')}.") from None
    if not isinstance(model, (GeoLinkModel, GeoLinkSegmenter)):
        raise InputError(f"The base model {path.name} has no GeoLink encoder to fine-tune.",
                         hint=f"Choose a GeoLink encoder package, e.g. {opt('model', 'default')}.")
    return model
