"""Tag text encoders: real MiniLM, a tiny CLIP saved to disk, the disk cache and the ln(frequency) weighting."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import CLIPTextModel

from geolink.errors import InputError
from geolink.osm import CachedTextEncoder, TagWeights, TextEncoder, embed_labels, get_text_encoder, prime_encoder
from geolink.osm.text import TransformerTextEncoder

from .text_helpers import tiny_clip_folder


class CountingEncoder(TextEncoder):
    """A real encoder (fixed per-text vectors) that records what it was asked to encode."""

    name, dim = "counting-test", 3

    def __init__(self):
        self.calls = []

    def encode(self, texts):
        self.calls.append(list(texts))
        return torch.tensor([[len(t), sum(map(ord, t)) % 7, 1.0] for t in texts], dtype=torch.float32)


def reference_pooling(encoder: TransformerTextEncoder, text: str) -> torch.Tensor:
    """The original's recipe: one text at a time, no padding, mean of the states after the start token."""
    batch = encoder.tokenizer(text, return_tensors="pt", truncation=True, max_length=encoder.max_length)
    with torch.no_grad():
        return encoder.model(**batch).last_hidden_state[0, 1:].mean(0)


def test_minilm_offline_default(tmp_path):
    encoder = get_text_encoder("minilm", cache_dir=tmp_path)
    assert encoder.dim == 384 and encoder.name == "minilm-l6-v2"
    texts = ["building:building", "highway:residential", "leisure:pitch", "x" * 3000]
    vectors = encoder.encode(texts)
    assert vectors.shape == (4, 384) and torch.isfinite(vectors).all()
    for i in range(3):  # batched and padded == the original's one-by-one pooling
        assert torch.allclose(vectors[i], reference_pooling(encoder.inner, texts[i]), atol=1e-5)
    assert torch.nn.functional.cosine_similarity(vectors[0], vectors[1], dim=0) < 0.99


def test_clip_text_model_from_a_local_folder(tmp_path):
    folder = tiny_clip_folder(tmp_path / "clip")
    encoder = get_text_encoder(str(folder), cached=False)
    assert isinstance(encoder.model, CLIPTextModel) and encoder.dim == 32
    vectors = encoder.encode(["natural:water", "amenity:" + "long" * 100])  # the long one is cut at 77 tokens
    assert vectors.shape == (2, 32)
    assert torch.allclose(vectors[0], reference_pooling(encoder, "natural:water"), atol=1e-5)


def test_unknown_encoders_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no text encoder fetched into the data folder
    monkeypatch.delenv("GEOLINK_CLIP_DIR", raising=False)
    with pytest.raises(InputError, match="not set up on this computer.*nor in the Hugging Face cache"):
        get_text_encoder("clip")
    with pytest.raises(InputError, match="Unknown text encoder"):
        get_text_encoder("no-such-encoder")
    with pytest.raises(InputError, match="Cannot load"):
        get_text_encoder(str(tmp_path))


def test_disk_cache_encodes_each_text_once(tmp_path):
    first = CountingEncoder()
    cached = CachedTextEncoder(first, tmp_path)
    a = cached.encode(["a:b", "c:d", "a:b"])
    cached.encode(["c:d"])
    assert first.calls == [["a:b", "c:d"]]
    second = CountingEncoder()  # a new process: the vectors come from the SQLite file
    b = CachedTextEncoder(second, tmp_path).encode(["a:b", "c:d", "a:b", "e:f"])
    assert second.calls == [["e:f"]]
    assert torch.equal(a, b[:3])
    assert (tmp_path / "text-counting-test.sqlite").exists()


def test_label_embedding_weights_like_the_original():
    encoder = CountingEncoder()
    weights = TagWeights({"building": 100, "roof shape": 10, "rare": 1})
    labels = ["building:building;roof shape:flat", "mystery:x;rare:y", "building:building", "mystery:x;unseen:z"]
    out = embed_labels(labels, encoder, weights)
    vec = {t: encoder.encode([t])[0].double()
           for t in ["building:building", "roof shape:flat", "mystery:x", "rare:y", "unseen:z"]}
    w1, w2 = math.log(100), math.log(10)
    expected0 = (vec["building:building"] * w1 + vec["roof shape:flat"] * w2) / (w1 + w2)
    assert torch.allclose(out[0].double(), expected0, atol=1e-6)
    # a key missing from the table weighs 1; a key seen once weighs ln 1 = 0
    assert torch.allclose(out[1].double(), vec["mystery:x"], atol=1e-6)
    assert torch.allclose(out[2].double(), vec["building:building"], atol=1e-6)
    assert torch.allclose(out[3].double(), (vec["mystery:x"] + vec["unseen:z"]) / 2, atol=1e-6)


def test_tag_frequency_tables(tmp_path):
    shipped = TagWeights.from_json()
    assert shipped.weight("highway") > shipped.weight("bicycle") > 0 and shipped.weight("not-a-key") == 1
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([1, 2]))
    with pytest.raises(InputError):
        TagWeights.from_json(str(bad))
    with pytest.raises(InputError):
        TagWeights.from_json(str(tmp_path / "missing.json"))


def test_the_original_frequency_table_reads(shared_dir):
    original = TagWeights.from_json(str(shared_dir / "geolink-examples" / "all_tags30_frequency1.json"))
    assert original.weight("roof shape") == pytest.approx(math.log(132323))


def test_priming_encodes_all_distinct_tags_in_one_go(tmp_path):
    inner = CountingEncoder()
    cached = CachedTextEncoder(inner, tmp_path)
    labels = ["building:building;roof shape:flat", "building:building", "amenity:cafe"]
    assert prime_encoder(labels, cached) == 3
    embed_labels(labels[:2], cached, TagWeights({}))
    assert len(inner.calls) == 1 and sorted(inner.calls[0]) == ["amenity:cafe", "building:building", "roof shape:flat"]


def test_clip_from_the_folder_the_plugin_names(tmp_path, monkeypatch):
    import geolink.osm.text as text

    monkeypatch.setattr(text, "_MODELS", {})
    monkeypatch.setenv("GEOLINK_CLIP_DIR", str(tiny_clip_folder(tmp_path / "clip")))
    encoder = get_text_encoder("clip", cached=False)
    assert isinstance(encoder.model, CLIPTextModel) and encoder.name == "clip-vit-b16" and encoder.dim == 32
    monkeypatch.setattr(text, "_MODELS", {})
    monkeypatch.setenv("GEOLINK_CLIP_DIR", str(tmp_path / "empty"))
    with pytest.raises(InputError, match="GEOLINK_CLIP_DIR"):
        get_text_encoder("clip")
