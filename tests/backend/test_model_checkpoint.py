"""Official checkpoints: the exact ViT-L layout, strict validation, no unpickling, the unimodal ViT."""

from __future__ import annotations

import json
import pickle
from typing import Dict, Tuple

import pytest
import timm
import torch

from geolink.errors import InputError, ModelError
from geolink.models import GeoLinkConfig, GeoLinkModel, load_model
from geolink.models.checkpoint import check_shapes

from .model_helpers import max_err, random_graph, save_official_checkpoint

torch.set_num_threads(2)
TEXT = 32  # a narrow tag embedding keeps the test checkpoint small


def to_official_shapes(shapes: Dict[str, Tuple[int, ...]]) -> Dict[str, Tuple[int, ...]]:
    """GeoLink's key shapes -> the official layout (the inverse of checkpoint.from_official_names)."""
    out = {}
    for key, shape in shapes.items():
        if key.startswith("osm_encoder.") and key.endswith(".lin.weight"):
            out[key[: -len("lin.weight")] + "lin_src.weight"] = shape
            out[key[: -len("lin.weight")] + "lin_dst.weight"] = shape
        else:
            out[key] = shape
    return out


def model_shapes(config: GeoLinkConfig) -> Dict[str, Tuple[int, ...]]:
    """Key shapes of the model a config builds, without allocating its weights."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in GeoLinkModel(config).state_dict().items()}


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    return save_official_checkpoint(tmp_path_factory.mktemp("ckpt") / "geolink_tiny.pth", text_dim=TEXT)


def test_vit_large_has_exactly_the_official_layout(shared_dir):
    layout = json.loads((shared_dir / "reference" / "official_checkpoint_layout_vit_large.json").read_text())
    ours = to_official_shapes(model_shapes(GeoLinkConfig(arch=layout["architecture"])))
    expected = {k: tuple(v) for k, v in layout["keys"].items()}
    assert ours == expected
    check_shapes(expected, ours, "layout")  # and the validator agrees


def test_official_checkpoint_loads_exactly(official):
    model, _, _, path = official
    loaded = load_model(path, layers=[0, 1])
    assert loaded.config.text_dim == TEXT and not loaded.training
    assert loaded.card.provenance["source"] == path.name and len(loaded.card.provenance["source_sha256"]) == 64
    image, graph = torch.randn(1, 3, 224, 224), [random_graph(2, 3, 1, text_dim=TEXT)]
    with torch.no_grad():
        a, b = model.encode(image, graph, [0, 1]), loaded.encode(image, graph)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    ours = loaded.state_dict()
    assert ours.keys() == model.state_dict().keys()
    assert all(torch.equal(ours[k], v) for k, v in model.state_dict().items())


def _save_variant(path, config, state):
    torch.save({"model_config": config, "model_state_dict": state}, path)
    return path


def test_wrong_shape_missing_key_and_unshared_gat_weights_are_refused(official, tmp_path):
    _, state, config, _ = official
    key = "img_encoder.blocks.1.mlp.fc1.weight"
    bad = dict(state, **{key: torch.zeros(10, 192)})
    with pytest.raises(ModelError, match=r"img_encoder\.blocks\.1\.mlp\.fc1\.weight: expected shape \[768, 192\], "
                                         r"found \[10, 192\]"):
        load_model(_save_variant(tmp_path / "shape.pth", config, bad))
    missing = {k: v for k, v in state.items() if k != "img_norm.bias"}
    with pytest.raises(ModelError, match=r"missing key\(s\): img_norm\.bias \[192\]"):
        load_model(_save_variant(tmp_path / "missing.pth", config, missing))
    extra = dict(state, surprise=torch.zeros(1))
    with pytest.raises(ModelError, match="unexpected key.*surprise"):
        load_model(_save_variant(tmp_path / "extra.pth", config, extra))
    lin = "osm_encoder.convs.0.convs.<line___to___point>.lin_dst.weight"
    unshared = dict(state, **{lin: state[lin] + 1})
    with pytest.raises(ModelError, match="lin_dst.weight differs"):
        load_model(_save_variant(tmp_path / "unshared.pth", config, unshared))
    with pytest.raises(ModelError, match="unknown architecture|not a GeoLink"):
        load_model(_save_variant(tmp_path / "arch.pth", {"architecture": "vit_nonsense_patch16"}, state))


class _Trap:
    called = False

    def __reduce__(self):
        return (_Trap.spring, ())

    @staticmethod
    def spring():
        _Trap.called = True


def test_pickled_code_is_never_run(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model_state_dict": {}, "x": _Trap()}, f)
    with pytest.raises(ModelError, match="cannot be read safely|not a checkpoint"):
        load_model(path)
    assert not _Trap.called
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError):
        load_model(tmp_path / "junk.pth")
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "absent.pth")
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(InputError, match="expected a model package"):
        load_model(tmp_path / "model.onnx")


def test_unimodal_vit_checkpoint_gives_an_image_only_model(tmp_path):
    torch.manual_seed(0)
    vit = timm.create_model("vit_tiny_patch16_224", num_classes=0, depth=3).eval()
    state = dict(vit.state_dict(), **{"decoder_embed.weight": torch.zeros(4, 4), "mask_token": torch.zeros(1, 1, 4)})
    torch.save({"model": state, "epoch": 3}, tmp_path / "vit.pth")
    model = load_model(tmp_path / "vit.pth", layers=[0, 2])
    assert not model.has_osm and model.depth == 3
    image = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ours = model.encode(image, [random_graph(1, 1, 1), None])  # graphs are ignored by an image-only model
        theirs = vit.forward_intermediates(image, indices=[0, 2], norm=False, intermediates_only=True)
    assert [max_err(a, b) for a, b in zip(ours, theirs)] == [0.0, 0.0]
