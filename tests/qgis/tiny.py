"""Tiny real model packages for the plugin's end-to-end tests, made with the backend's own API.

Random weights (the tests check the plumbing, not the maps): a 2-block ViT of width 64 on 32 px windows,
with the OSM branch (MiniLM-sized tag embeddings), and the same encoder with a 3-class linear head.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest

CLASSES = ["water", "vegetation", "built-up"]
COLOURS = ["#1f78b4", "#33a02c", "#e31a1c"]


def packages(folder: Path) -> Dict[str, str]:
    """{"encoder": path, "segmentation": path} written into `folder`."""
    torch = pytest.importorskip("torch")
    try:
        from geolink.models import build_segmenter, create_geolink, save_package
    except ImportError as exc:
        pytest.skip(f"the backend's model API is not complete in this build: {exc}")
    torch.manual_seed(0)
    encoder = create_geolink("tiny", text_dim=384, img_size=32, pretraining=False, osm_dim=32, fusion_dim=64,
                             fusion_heads=2, vit_overrides={"depth": 2, "embed_dim": 64, "num_heads": 2})
    provenance = {"what": "random weights for the plugin's tests"}
    enc_path = save_package(encoder, folder / "tiny-encoder.safetensors", provenance=provenance)
    segmenter = build_segmenter(encoder, "linear", len(CLASSES))
    seg_path = save_package(segmenter, folder / "tiny-landcover.safetensors", provenance=provenance,
                            classes=[{"name": n, "color": c} for n, c in zip(CLASSES, COLOURS)])
    return {"encoder": str(enc_path), "segmentation": str(seg_path)}
