"""Model packages (one .safetensors with the JSON card) and the segmentation heads."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from geolink.errors import InputError, ModelError
from geolink.models import (
    GeoLinkModel,
    GeoLinkSegmenter,
    build_segmenter,
    load_model,
    read_card,
    save_package,
    unfreeze_last_blocks,
)
from geolink.models.heads import GROUP_CHANNELS

from .model_helpers import max_err, random_graph, tiny_model

torch.set_num_threads(2)
CLASSES = [{"name": "water", "color": "#1f78b4"}, {"name": "forest", "color": "#33a02c"},
           {"name": "built", "color": "#e31a1c"}]


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3).eval()


def inputs(n=2):
    torch.manual_seed(7)
    return torch.randn(n, 3, 32, 32), [random_graph(2, 3, 1, seed=i) for i in range(n)]


def test_round_trip_is_exact_and_card_complete(model, tmp_path):
    path = save_package(model, tmp_path / "m.safetensors", provenance={"data": "test"})
    assert list(tmp_path.iterdir()) == [path]  # atomic: no partial file left
    card = read_card(path).to_dict()
    for key in ("format", "architecture", "config", "text_encoder", "bands", "normalisation", "gsd", "input_size",
                "layers", "head", "provenance"):
        assert key in card, key
    assert card["provenance"] == {"data": "test"} and card["head"] is None and card["text_encoder"]["dim"] == 24
    header = json.loads(path.read_bytes()[8:8 + struct.unpack("<Q", path.read_bytes()[:8])[0]])
    assert "geolink_card" in header["__metadata__"]
    loaded = load_model(path)
    assert isinstance(loaded, GeoLinkModel) and not loaded.training and loaded.card.provenance == {"data": "test"}
    assert {k: v.shape for k, v in loaded.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}
    images, graphs = inputs()
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(model.encode(images, graphs), loaded.encode(images, graphs)))
    assert hasattr(loaded, "pretrain_losses") and loaded.has_pretraining_parts


def test_half_and_encoder_only(model, tmp_path):
    full = save_package(model, tmp_path / "full.safetensors")
    small = save_package(model, tmp_path / "small.safetensors", half=True, encoder_only=True)
    assert small.stat().st_size < full.stat().st_size / 2
    loaded = load_model(small)
    assert not loaded.has_pretraining_parts and next(loaded.parameters()).dtype == torch.float32
    images, graphs = inputs()
    with torch.no_grad():
        assert max(max_err(a, b) for a, b in zip(model.encode(images, graphs), loaded.encode(images, graphs))) < 2e-2
    with pytest.raises(ModelError, match="no pretraining parts"):
        loaded.pretrain_losses(images, graphs)


@pytest.mark.parametrize("decoder", ["detail", "upernet", "fpn", "linear"])
def test_segmenter_heads(model, decoder, tmp_path):
    seg = build_segmenter(model, decoder, 3, classes=CLASSES)
    images, graphs = inputs(3)
    seg.train()
    logits = seg(images, graphs)
    assert logits.shape == (3, 3, 32, 32)
    logits.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in seg.head.parameters() if p.requires_grad)
    seg.eval()
    path = save_package(seg, tmp_path / "seg.safetensors", provenance={"task": "test"}, classes=CLASSES,
                        encoder_only=True)
    card = read_card(path).to_dict()
    assert card["head"]["type"] == "segmentation" and card["head"]["decoder"] == decoder
    assert card["head"]["classes"] == CLASSES
    loaded = load_model(path)
    assert isinstance(loaded, GeoLinkSegmenter) and loaded.card.head["classes"] == CLASSES
    with torch.no_grad():
        # class probabilities (the detail head's log-probabilities magnify float32 noise where p is tiny)
        assert max_err(seg(images, graphs).softmax(1), loaded(images, graphs).softmax(1)) < 1e-5
        feats = loaded.encode(images, graphs)
        assert max_err(loaded.head(feats, images), loaded(images, graphs)) == 0.0


@pytest.mark.parametrize("decoder", ["fpn", "detail"])
def test_members_train_apart_and_predict_together(model, decoder, tmp_path):
    torch.manual_seed(0)
    seg = build_segmenter(model, decoder, 3, classes=CLASSES, members=3, width=64)
    images, graphs = inputs(2)
    seg.train()
    each = seg(images, graphs)
    assert isinstance(each, tuple) and len(each) == 3 and all(x.shape == (2, 3, 32, 32) for x in each)
    assert not torch.allclose(each[0], each[1])  # different initial weights
    seg.eval()
    path = save_package(seg, tmp_path / "ens.safetensors", classes=CLASSES, encoder_only=True)
    assert {k: read_card(path).head[k] for k in ("members", "width", "group_channels")} == {
        "members": 3, "width": 64, "group_channels": GROUP_CHANNELS}
    norms = [m for m in seg.head.members.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and all(m.num_channels // m.num_groups == GROUP_CHANNELS for m in norms)
    loaded = load_model(path)
    with torch.no_grad():
        together = loaded(images, graphs)
        feats = loaded.encode(images, graphs)
        pyramid = [m(f) for m, f in zip(loaded.head.pyramid, feats)]
        mean = torch.stack([member(pyramid).softmax(1) for member in loaded.head.members]).mean(0)
    assert together.shape == (2, 3, 32, 32)
    if decoder == "fpn":  # the mean of the members' probabilities, upsampled
        expected = torch.nn.functional.interpolate(mean.log(), size=(32, 32), mode="bilinear", align_corners=False)
        assert max_err(together, expected) < 1e-5


def test_packages_from_before_members_load_unchanged(model, tmp_path):
    """A package written when a head had one decoder (keys head.decoder.*, no members in the card) loads as a
    one-member head and predicts as before (the shipped default model is such a package)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    seg = build_segmenter(model, "fpn", 3, classes=CLASSES).eval()
    path = save_package(seg, tmp_path / "new.safetensors", classes=CLASSES, encoder_only=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k.replace("head.members.0.", "head."): f.get_tensor(k) for k in f.keys()}
    card = json.loads(meta["geolink_card"])
    del card["head"]["members"], card["head"]["width"]
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**meta, "geolink_card": json.dumps(card)})
    assert any(k.startswith("head.decoder.") for k in tensors)
    old = load_model(tmp_path / "old.safetensors")
    images, graphs = inputs(2)
    with torch.no_grad():
        assert max_err(old(images, graphs), seg(images, graphs)) < 1e-5


def test_packages_from_before_group_channels_load_unchanged(model, tmp_path):
    """A package with half-width members written before GROUP_CHANNELS (smp's 32 groups, no group_channels in
    its card) loads with those groups and predicts as before."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    seg = build_segmenter(model, "fpn", 3, classes=CLASSES, members=2, width=128, group_channels=None).eval()
    assert {m.num_channels // m.num_groups for m in seg.modules() if isinstance(m, torch.nn.GroupNorm)} == {2}
    path = save_package(seg, tmp_path / "new.safetensors", classes=CLASSES, encoder_only=True)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    card = json.loads(meta["geolink_card"])
    del card["head"]["group_channels"]
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata={**meta, "geolink_card": json.dumps(card)})
    old = load_model(tmp_path / "old.safetensors")
    images, graphs = inputs(2)
    with torch.no_grad():
        assert max_err(old(images, graphs), seg(images, graphs)) < 1e-4  # 4 channels a group: about 1


def test_segmenter_reuse_and_unfreeze(model):
    seg = build_segmenter(model, "upernet", 2)
    again = build_segmenter(seg, "linear", 4)
    assert again.encoder is model and again.head.classifier.out_channels == 4
    unfreeze_last_blocks(seg, 1)
    trainable = {n.split(".")[0] + "." + n.split(".")[1] for n, p in seg.named_parameters() if p.requires_grad}
    assert "head.members" in trainable and "encoder.osm_cross_modal_encoder" in trainable
    prefix = "encoder.img_encoder.blocks."
    blocks = {n.split(".")[3] for n, p in seg.named_parameters() if p.requires_grad and n.startswith(prefix)}
    assert blocks == {"3"}
    unfreeze_last_blocks(seg, 0)
    assert not any(p.requires_grad for p in seg.encoder.parameters())
    with pytest.raises(InputError, match="needs 4 feature maps"):
        build_segmenter(model, "upernet", 2, layers=[1, 3])
    with pytest.raises(InputError, match="Unknown head"):
        build_segmenter(model, "deeplab", 2)


def test_bad_packages_are_refused(model, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelError, match="not a GeoLink model package"):
        load_model(tmp_path / "junk.safetensors")
    from safetensors.torch import save_file

    card = read_card(save_package(model, tmp_path / "ok.safetensors")).to_dict()
    save_file({"cls_token": torch.zeros(1, 1, 64)}, str(tmp_path / "partial.safetensors"),
              metadata={"geolink_card": json.dumps(card)})
    with pytest.raises(ModelError, match="missing key"):
        load_model(tmp_path / "partial.safetensors")
    with pytest.raises(ModelError, match="without a task head"):
        save_package(model, tmp_path / "x.safetensors", classes=CLASSES)
