"""`geolink import-checkpoint`: the reference GeoLink checkpoint -> a package that encodes identically."""

from __future__ import annotations

import hashlib

import pytest
import torch

from geolink import load_model
from geolink.cli import main as cli_main
from geolink.errors import InputError
from geolink.models import read_card
from geolink.progress import Progress
from geolink.tasks import import_checkpoint as task

from .model_helpers import ufz_graphs

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def reference(shared_dir):
    return shared_dir / "reference" / "fusion_vit_tiny"


def test_import_gives_an_identical_model_with_provenance(reference, shared_dir, tmp_path):
    src = reference / "checkpoint.pth"
    result = task.run(task.Config(src=str(src), out=str(tmp_path / "geolink_tiny.safetensors"), gsd=0.6),
                      Progress())
    out = result["outputs"]["model"]
    card = read_card(out).to_dict()
    assert card["provenance"]["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    assert card["architecture"] == "vit_tiny_patch16_224" and card["gsd"] == 0.6
    assert card["text_encoder"] == {"name": "clip", "dim": 512} and card["name"] == "geolink_tiny"
    expected = torch.load(reference / "expected.pt", weights_only=True)
    graphs = ufz_graphs(shared_dir, expected["samples"])
    original, package = load_model(src), load_model(out)
    with torch.no_grad():
        a = original.encode(expected["images"], graphs, expected["output_layers"])
        b = package.encode(expected["images"], graphs, expected["output_layers"])
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_cli_half_encoder_only(reference, tmp_path, capsys):
    out = tmp_path / "small.safetensors"
    code = cli_main(["--quiet", "import-checkpoint", str(reference / "checkpoint.pth"), "--out", str(out), "--half",
                     "--encoder-only", "--name", "GeoLink tiny"])
    assert code == 0 and out.exists()
    assert out.stat().st_size < 16e6  # ViT-T encoder in float16
    card = read_card(out).to_dict()
    assert card["name"] == "GeoLink tiny" and card["config"]["pretraining"] is False


def test_refuses_bad_output(reference, tmp_path):
    with pytest.raises(InputError, match=".safetensors"):
        task.run(task.Config(src=str(reference / "checkpoint.pth"), out=str(tmp_path / "x.pth")), Progress())
    with pytest.raises(InputError, match="--bands"):
        task.run(task.Config(src=str(reference / "checkpoint.pth"), out=str(tmp_path / "x.safetensors"),
                             bands="red,green"), Progress())
    assert not list(tmp_path.iterdir())


