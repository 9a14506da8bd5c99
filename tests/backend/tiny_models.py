"""Tiny random GeoLink model packages for tests (and the CPU benchmark), made with the backend's model API.

    path = make_package(tmp_path / "m.safetensors", classes=["water", "forest", "urban"])

Random weights: the tests check the plumbing (grids, nodata, styles, atomic writes), not the maps.
Defaults: a 2-block ViT of width 64 on 32 px windows with the OSM branch (MiniLM-sized tag
embeddings) and a linear head; pass classes=None for an encoder-only package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

COLOURS = ["#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3", "#b2df8a"]


def make_package(path: Path, classes: Optional[Sequence[str]] = ("water", "vegetation", "built-up"),
                 img_size: int = 32, depth: int = 2, dim: int = 64, heads: int = 2, arch: str = "tiny",
                 decoder: str = "linear", osm: bool = True, seed: int = 0, **card) -> Path:
    """Write a package; extra keyword arguments go into the card (e.g. gsd=20.0, bands=[...])."""
    import torch

    from geolink.models import ModelCard, build_segmenter, create_geolink, save_package

    torch.manual_seed(seed)
    overrides = {"depth": depth, "embed_dim": dim, "num_heads": heads} if dim else {}
    encoder = create_geolink(arch, text_dim=384, img_size=img_size, pretraining=False, osm=osm, osm_dim=32,
                             fusion_dim=64, fusion_heads=2, vit_overrides=overrides)
    model = encoder
    named = None
    if classes:
        model = build_segmenter(encoder, decoder, len(classes))
        named = [{"name": n, "color": COLOURS[i % len(COLOURS)]} for i, n in enumerate(classes)]
    full = ModelCard.for_model(encoder, **{"name": Path(path).stem, **card})
    return save_package(model, path, full, provenance={"what": "random weights for tests"}, classes=named)
