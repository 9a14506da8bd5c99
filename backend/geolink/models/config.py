"""Named GeoLink configurations: one dataclass that round-trips through a model card."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from ..errors import ModelError

ARCHS = {
    "tiny": "vit_tiny_patch16_224",
    "small": "vit_small_patch16_224",
    "base": "vit_base_patch16_224",
    "large": "vit_large_patch16_224",
}


@dataclass
class GeoLinkConfig:
    """Sizes of a GeoLink model; the defaults are the official ones (except the ViT)."""

    arch: str = "vit_large_patch16_224"  # any timm ViT with 16 px patches, or tiny/small/base/large
    img_size: int = 224  # the native input size (position tables are built for its grid)
    in_chans: int = 3
    vit_overrides: Dict[str, Any] = field(default_factory=dict)  # e.g. {"depth": 2, "embed_dim": 64, "num_heads": 2}
    osm: bool = True  # False: image-only model (the unimodal checkpoint)
    text_dim: int = 512
    osm_dim: int = 128
    fusion_dim: int = 256
    fusion_heads: int = 16
    fusion_depth: int = 1
    # Statistics of the OSM LayerNorm: "graph" = each image's own nodes (an image's output does not depend
    # on its batch); "batch" = all nodes of the batch, as the original computes them (reproduces its numbers).
    osm_norm: str = "graph"
    layers: Optional[List[int]] = None  # default output layers of encode()
    pretraining: bool = True  # build the MAE decoder, graph readout and reconstruction parts
    decoder_dim: int = 512
    decoder_depth: int = 2
    decoder_heads: int = 16
    graph_dim: int = 128
    contrast_dim: int = 64
    temperature: float = 0.2
    norm_pix_loss: bool = True

    def __post_init__(self):
        self.arch = ARCHS.get(self.arch, self.arch)
        if self.osm_norm not in ("graph", "batch"):
            raise ModelError(f"osm_norm must be 'graph' or 'batch', got {self.osm_norm!r}.")
        if self.img_size % 16:
            raise ModelError(f"The input size {self.img_size} is not a multiple of the patch size 16.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> GeoLinkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ModelError(f"Unknown model configuration field(s): {', '.join(unknown)}.",
                             hint="The package was written by a newer GeoLink; update the backend.")
        return cls(**values)


def default_layers(depth: int) -> List[int]:
    """Four block indices spread over the depth, ending at the last: [3, 5, 7, 11] for 12 blocks,
    [7, 11, 15, 23] for 24 (the original's choices); shallow test models repeat blocks."""
    return [max(0, round(depth * f) - 1) for f in (1 / 3, 1 / 2, 2 / 3)] + [depth - 1]
