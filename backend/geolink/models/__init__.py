"""GeoLink's model: encoder (ViT + OSM graph + fusion), pretraining parts, task heads, packages, checkpoints.

    model = load_model("geolink_vit_large.pth")          # official checkpoint or .safetensors package
    feats = model.encode(images, graphs, layers=None)     # list of [B, C, H/16, W/16]
"""

from importlib import import_module

from .card import DECODERS, ModelCard, read_card

# Everything else is imported on first use (PEP 562): reading a card must not import torch and transformers
# (a similarity query over cached embeddings reads one and takes a second or two).
_LAZY = {"ARCHS": "config", "GeoLinkConfig": "config", "default_layers": "config", "GeoLinkModel": "geolink",
         "create_geolink": "geolink", "GraphBatch": "graphs", "collate_graphs": "graphs",
         "GeoLinkSegmenter": "heads", "build_segmenter": "heads", "unfreeze_last_blocks": "heads",
         "load_model": "package", "load_package": "package", "save_package": "package"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ARCHS", "DECODERS", "GeoLinkConfig", "GeoLinkModel", "GeoLinkSegmenter", "GraphBatch", "ModelCard",
           "build_segmenter", "collate_graphs", "create_geolink", "default_layers", "load_model", "load_package",
           "read_card", "save_package", "unfreeze_last_blocks"]
