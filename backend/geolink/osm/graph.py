"""One tile's OSM features -> a torch_geometric HeteroData in the graph format (format.py).

The polygon's inner points follow the original's recipe: from the centroid towards 0, 120 and 240
degrees, at a radius drawn uniformly between half the smallest and half the largest
centroid-to-vertex distance, pulled towards the centroid (10 steps) until inside the polygon, else
placed at 1/100 of the smallest radius. The original drew the radii unseeded; here they come from
a numpy generator seeded with `seed`, so a graph is reproducible.

Edge attributes are the relation classes of relations.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import shapely

from ..errors import InputError
from . import relations as rel
from .format import EDGE_ATTR_WIDTHS, EDGE_TYPES, KINDS, LINE, POINT, POLYGON, POSITION_WIDTHS
from .read import OsmFeatures
from .text import TagWeights, TextEncoder, default_tag_weights, embed_labels


class TileFrame:
    """Maps CRS coordinates to tile units: x from the west edge, y from the north edge."""

    def __init__(self, bounds: Sequence[float]):
        self.west, self.south, self.east, self.north = (float(v) for v in bounds)
        self.width, self.height = self.east - self.west, self.north - self.south
        if not (self.width > 0 and self.height > 0 and np.isfinite([self.width, self.height]).all()):
            raise InputError(f"Bounds {tuple(bounds)} are empty: need west < east and south < north.")

    def __call__(self, xy: np.ndarray) -> np.ndarray:
        return np.stack([(xy[..., 0] - self.west) / self.width, 1 - (xy[..., 1] - self.south) / self.height], -1)


def polygon_positions(polygons: np.ndarray, frame: TileFrame, seed: int = 0) -> np.ndarray:
    """[n, 8]: three inner points then the centroid, in tile units (module doc)."""
    n = len(polygons)
    if n == 0:
        return np.zeros((0, 8))
    center = shapely.get_coordinates(shapely.centroid(polygons))
    ring_xy, owner = shapely.get_coordinates(shapely.get_exterior_ring(polygons), return_index=True)
    dist = np.hypot(*(ring_xy - center[owner]).T)
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    max_r = np.maximum.reduceat(dist, starts) / 2
    min_r = np.minimum.reduceat(dist, starts) / 2
    radius = min_r[:, None] + np.random.default_rng(seed).random((n, 3)) * (max_r - min_r)[:, None]
    theta = np.radians([0.0, 120.0, 240.0])
    direction = np.stack([np.cos(theta), np.sin(theta)], -1)  # [3, 2]
    steps = np.linspace(1.0, 0.0, 10)
    cand = center[:, None, None, :] + (radius[:, :, None] * steps)[..., None] * direction[None, :, None, :]
    shapely.prepare(polygons)
    inside = shapely.contains_xy(polygons[:, None, None], cand[..., 0], cand[..., 1])  # [n, 3, 10]
    first = inside.argmax(-1)
    chosen = np.take_along_axis(cand, first[..., None, None].repeat(2, -1), axis=2)[:, :, 0]
    fallback = center[:, None, :] + (min_r[:, None, None] * direction[None]) / 100
    points = np.where(inside.any(-1)[..., None], chosen, fallback)
    return frame(np.concatenate([points, center[:, None, :]], axis=1)).reshape(n, 8)


def line_positions(lines: np.ndarray, frame: TileFrame) -> np.ndarray:
    """[n, 6]: centroid, first vertex, last vertex in tile units."""
    center = shapely.get_coordinates(shapely.centroid(lines))
    first = shapely.get_coordinates(shapely.get_point(lines, 0))
    last = shapely.get_coordinates(shapely.get_point(lines, -1))
    return frame(np.stack([center, first, last], axis=1)).reshape(len(lines), 6)


def point_positions(points: np.ndarray, frame: TileFrame) -> np.ndarray:
    return frame(shapely.get_coordinates(points)).reshape(len(points), 2)


def graph_edges(polygons: np.ndarray, lines: np.ndarray, points: np.ndarray) -> dict:
    """(src_type, dst_type) -> (edge_index [2, E] int64, edge_attr [E, C] float32) for the 9 edge types."""
    edges = {("polygon", "polygon"): rel.same_dim_edges(polygons),
             ("line", "line"): rel.same_dim_edges(lines),
             ("point", "point"): rel.delaunay_edges(shapely.get_coordinates(points))}
    pairs = [("line", "polygon", lines, polygons, rel.line_polygon_class, rel.LINE_POLYGON_CODES),
             ("point", "line", points, lines, rel.point_other_class, rel.POINT_OTHER_CODES),
             ("point", "polygon", points, polygons, rel.point_other_class, rel.POINT_OTHER_CODES)]
    for a_name, b_name, a, b, rule, order in pairs:
        edges[(a_name, b_name)], edges[(b_name, a_name)] = rel.cross_dim_edges(a, b, rule, order)
    return edges


def build_graph(features: OsmFeatures, bounds: Sequence[float], encoder: TextEncoder,
                weights: Optional[TagWeights] = None, seed: int = 0):
    """A tile's features (in the bounds' CRS, e.g. from OsmIndex.query) -> HeteroData, or None without features."""
    import torch
    from torch_geometric.data import HeteroData

    frame = TileFrame(bounds)
    if not len(features):
        return None
    weights = weights or default_tag_weights()
    text = embed_labels(list(features.labels), encoder, weights)
    geoms = {name: features.geoms[features.kinds == kind] for kind, name in zip((POLYGON, LINE, POINT), KINDS)}
    positions = {"polygon": polygon_positions(geoms["polygon"], frame, seed),
                 "line": line_positions(geoms["line"], frame),
                 "point": point_positions(geoms["point"], frame)}
    data = HeteroData()
    for kind, name in zip((POLYGON, LINE, POINT), KINDS):
        pos = torch.from_numpy(positions[name].reshape(-1, POSITION_WIDTHS[name]))
        data[name].x = torch.cat([text[torch.from_numpy(features.kinds == kind)].double(), pos], 1).float()
    edges = graph_edges(geoms["polygon"], geoms["line"], geoms["point"])
    for src, dst in EDGE_TYPES:
        index, attr = edges[(src, dst)]
        data[src, "to", dst].edge_index = torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64)).view(2, -1)
        data[src, "to", dst].edge_attr = torch.from_numpy(attr).view(-1, EDGE_ATTR_WIDTHS[(src, dst)])
    return data


def graph_summary(data) -> dict:
    """Node and edge counts, for logs and task figures."""
    if data is None:
        return {"nodes": {k: 0 for k in KINDS}, "edges": 0}
    return {"nodes": {k: int(data[k].num_nodes or 0) for k in KINDS},
            "edges": int(sum(data[s, "to", d].edge_index.shape[1] for s, d in EDGE_TYPES))}


def _safe_globals() -> list:
    from torch_geometric.data import HeteroData
    from torch_geometric.data.storage import BaseStorage, EdgeStorage, GlobalStorage, NodeStorage

    return [HeteroData, BaseStorage, NodeStorage, EdgeStorage, GlobalStorage]


def save_graph(data, path: str) -> Path:
    """torch.save the HeteroData atomically (readable by the original code and by load_graph)."""
    import torch

    from ..atomic import atomic_output

    with atomic_output(path) as tmp:
        torch.save(data, tmp)
    return Path(path)


def load_graph(path: str):
    """Load a GeoLink graph .pt with torch.load(weights_only=True), allowing only torch_geometric's data classes."""

    from ..safe_load import load_tensors

    return load_tensors(path, "the graph", allowed=_safe_globals(), error=InputError,
                        hint="Expected a torch_geometric HeteroData saved with torch.save.")

