"""GeoLink's model: encoder (ViT + OSM graph + fusion), pretraining parts, task heads, packages, checkpoints.

    model = load_model("geolink_vit_large.pth")          # official checkpoint or .safetensors package
    feats = model.encode(images, graphs, layers=None)     # list of [B, C, H/16, W/16]
"""

from .card import ModelCard, read_card
from .config import ARCHS, GeoLinkConfig, default_layers
from .geolink import GeoLinkModel, create_geolink
from .graphs import GraphBatch, collate_graphs
from .heads import DECODERS, GeoLinkSegmenter, build_segmenter, unfreeze_last_blocks
from .package import load_model, load_package, save_package

__all__ = ["ARCHS", "DECODERS", "GeoLinkConfig", "GeoLinkModel", "GeoLinkSegmenter", "GraphBatch", "ModelCard",
           "build_segmenter", "collate_graphs", "create_geolink", "default_layers", "load_model", "load_package",
           "read_card", "save_package", "unfreeze_last_blocks"]
