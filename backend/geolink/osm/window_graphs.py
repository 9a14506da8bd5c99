"""The graph of each window of an area: what inference, fine-tuning and pretraining on rasters all build.

    graphs = WindowGraphs.from_files(["city.osm.pbf"], raster_crs_wkt, raster_bounds, "minilm")
    graph = graphs(window_bounds)  # HeteroData, or None when no feature meets the window
"""

from __future__ import annotations

from typing import Optional, Sequence

from ..progress import Progress
from .graph import build_graph
from .read import OsmFeatures, OsmIndex
from .text import get_text_encoder, prime_encoder


class WindowGraphs:
    """The OSM read once for an area (in its CRS) and indexed; called with a window's bounds, the graph of the
    features inside it (None without features, or without a text encoder: an image-only model). The text
    encoder (get_text_encoder's name) is loaded only when features meet the area, and their tags are
    encoded up front, in large batches."""

    def __init__(self, index: OsmIndex, area: Sequence[float], text_encoder: Optional[str], device: str = "cpu"):
        self.index = index
        self.inside = index.query(area) if len(index) else OsmFeatures.empty()
        self.encoder = get_text_encoder(text_encoder, device=device) if text_encoder and len(self.inside) else None
        if self.encoder is not None:
            prime_encoder(list(self.inside.labels), self.encoder)

    @classmethod
    def from_files(cls, paths: Sequence[str], crs_wkt: str, area: Sequence[float], text_encoder: Optional[str],
                   device: str = "cpu", progress: Optional[Progress] = None) -> WindowGraphs:
        return cls(OsmIndex.from_files(list(paths), crs_wkt, progress), area, text_encoder, device)

    def __call__(self, bounds: Sequence[float]):
        if self.encoder is None:
            return None
        features = self.index.query(bounds)
        return build_graph(features, bounds, self.encoder) if len(features) else None
