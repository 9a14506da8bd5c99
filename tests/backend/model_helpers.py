"""Tiny GeoLink models and random OSM graphs in the original format, for the model tests."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from torch_geometric.data import HeteroData

from geolink.models import create_geolink
from geolink.osm.format import POSITION_WIDTHS, RELATIONS

TEXT_DIM = 24
TINY = dict(vit_overrides={"depth": 4, "embed_dim": 64, "num_heads": 2}, fusion_dim=32, fusion_heads=4, osm_dim=16,
            decoder_dim=32, decoder_heads=4, decoder_depth=1, graph_dim=16, contrast_dim=8)
UFZ = ("shenzhen_21504_11200", "singapore_22176_12992", "singapore_22848_10752", "chicago_15008_19040",
       "singapore_30912_12320")


def tiny_model(seed: int = 0, img_size: int = 32, **options):
    torch.manual_seed(seed)
    return create_geolink("tiny", text_dim=TEXT_DIM, img_size=img_size, **{**TINY, **options})


def random_graph(polygons: int, lines: int, points: int, edges: int = 6, seed: int = 0,
                 relations=RELATIONS, text_dim: int = TEXT_DIM) -> HeteroData:
    """A HeteroData like the original's: x = text embedding + positions in 0..1; random edges per relation."""
    g = torch.Generator().manual_seed(seed)
    data = HeteroData()
    counts = {"polygon": polygons, "line": lines, "point": points}
    for t, n in counts.items():
        text = torch.randn(n, text_dim, generator=g)
        data[t].x = torch.cat([text, torch.rand(n, POSITION_WIDTHS[t], generator=g)], 1)
    for src, rel, dst in relations:
        ns, nd = counts[src], counts[dst]
        e = edges if ns and nd else 0
        data[src, rel, dst].edge_index = torch.stack([torch.randint(0, max(ns, 1), (e,), generator=g),
                                                      torch.randint(0, max(nd, 1), (e,), generator=g)])
    return data


def ufz_graphs(shared: Path, names=UFZ[:3]) -> list:
    from geolink.osm import load_graph

    return [load_graph(shared / "geolink-examples" / "ufz_example" / "graph" / f"{n}.pt") for n in names]


def max_err(a: torch.Tensor, b: Optional[torch.Tensor]) -> float:
    return float((a - b).abs().max())


def official_state(model) -> dict:
    """The model's weights under the official names (torch_geometric 2.4 GATConv, duplicated patch_embed)."""
    out = {}
    for k, v in model.state_dict().items():
        if k.startswith("osm_encoder.") and k.endswith(".lin.weight"):
            out[k[:-len("lin.weight")] + "lin_src.weight"] = v.clone()
            out[k[:-len("lin.weight")] + "lin_dst.weight"] = v.clone()
        else:
            out[k] = v.clone()
    return out


def save_official_checkpoint(path: Path, text_dim: int = 512, depth: int = 2):
    """A random multimodal GeoLink (ViT-Tiny, `depth` blocks; 512-d tag embeddings: CLIP's, as the official weights)
    saved in the official checkpoint format ({"model_config", "model_state_dict"} with the official key names)
    -> (model, state, config, path)."""
    torch.manual_seed(0)
    model = create_geolink("vit_tiny_patch16_224", text_dim=text_dim, vit_overrides={"depth": depth}).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):  # 0 at initialisation: a bias loaded into the wrong place would not show
                p.normal_(std=0.1)
    state = official_state(model)
    config = {"architecture": "vit_tiny_patch16_224", "num_classes": 0, "global_pool": "",
              "pos_embed_requires_grad": False}
    torch.save({"model_config": config, "model_state_dict": state}, path)
    return model, state, config, Path(path)
