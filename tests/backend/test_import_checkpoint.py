"""`geolink import-checkpoint`: the reference GeoLink checkpoint -> a package that encodes identically."""

from __future__ import annotations

import hashlib
import threading

import pytest
import torch

from geolink import load_model
from geolink.cli import main as cli_main
from geolink.errors import Cancelled, CommandLineWords, InputError, ModelError, render
from geolink.models import read_card
from geolink.progress import Progress
from geolink.tasks import import_checkpoint as task

from .model_helpers import save_official_checkpoint, ufz_graphs

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




def test_sha256_is_reported_with_progress_and_written_into_the_card(tmp_path):
    _, _, _, src = save_official_checkpoint(tmp_path / "official.pth")
    events = []
    result = task.run(task.Config(src=str(src), out=str(tmp_path / "m.safetensors")), Progress(events.append))
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    assert result["figures"]["source_sha256"] == sha and result["figures"]["text_encoder"] == "clip"
    assert read_card(tmp_path / "m.safetensors").provenance["source_sha256"] == sha
    hashing = [e for e in events if e["event"] == "progress" and e["message"].startswith("SHA-256 of official.pth")]
    assert len(hashing) >= 2 and hashing[-1]["percent"] == 40.0  # the first 40 % of the bar, to the end of the file
    assert any(e["event"] == "log" and e["message"] == f"SHA-256 of official.pth: {sha}" for e in events)


def test_cancel_while_hashing_leaves_nothing(tmp_path):
    _, _, _, src = save_official_checkpoint(tmp_path / "official.pth")
    cancel = threading.Event()

    def sink(event):
        if event["event"] == "progress" and event["message"].startswith("SHA-256"):
            cancel.set()  # the user clicks Cancel as soon as the hash has started

    with pytest.raises(Cancelled):
        task.run(task.Config(src=str(src), out=str(tmp_path / "m.safetensors")), Progress(sink, cancel))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["official.pth"]


def test_a_file_that_is_not_a_checkpoint_is_refused_at_once_in_plain_words(tmp_path):
    junk = tmp_path / "holiday.pth"
    junk.write_bytes(b"GIF89a" + bytes(4096))
    events = []
    with pytest.raises(ModelError, match="holiday.pth is not a GeoLink checkpoint: it is not a file saved by "
                                         "PyTorch") as err:
        task.run(task.Config(src=str(junk), out=str(tmp_path / "m.safetensors")), Progress(events.append))
    assert not any(e["event"] == "progress" and "SHA-256" in e["message"] for e in events)  # refused before hashing
    hint = render(err.value.hint, CommandLineWords(task.Config))
    assert hint.startswith("Choose for SRC one of the two official GeoLink checkpoints")
    assert err.value.option == "src"
    package = tmp_path / "m.safetensors"
    package.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    with pytest.raises(ModelError, match="it is a model package, which needs no import"):
        task.run(task.Config(src=str(package), out=str(tmp_path / "n.safetensors")), Progress())
    state_dict_only = tmp_path / "weights.pth"
    torch.save({"some.weight": torch.zeros(2)}, state_dict_only)
    with pytest.raises(ModelError, match="neither a GeoLink checkpoint nor a ViT state dict"):
        task.run(task.Config(src=str(state_dict_only), out=str(tmp_path / "w.safetensors")), Progress())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holiday.pth", "m.safetensors", "weights.pth"]
