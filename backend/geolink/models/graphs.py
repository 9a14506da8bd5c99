"""OSM graphs for the model: HeteroData in the original GeoLink format, batched into plain tensors.

A graph is a torch_geometric HeteroData with node types polygon, line and point, x = tag text
embedding followed by positions in tile units (x from the west edge, y from the north edge):
polygon 4 points (8 values), line 3 (6), point 1 (2); edge types (src, "to", dst). `None`, a graph
without nodes, or a missing node type all mean "no entities".

The original averages, for each node type, over the relations a batch *has* (HeteroConv skips edge
types absent from the data). To make every image's result independent of its batch neighbours,
relation presence is recorded per graph (`present`) and applied per graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import torch

from ..errors import InputError

NODE_TYPES = ("point", "line", "polygon")
POS_POINTS = {"point": 1, "line": 3, "polygon": 4}
RELATIONS: Tuple[Tuple[str, str, str], ...] = tuple(
    (s, "to", d) for s, ds in (("point", ("point", "line", "polygon")), ("line", ("line", "point", "polygon")),
                               ("polygon", ("polygon", "point", "line"))) for d in ds)


@dataclass
class GraphBatch:
    """Node features, positions and graph index per node type, global edge indices, relation flags."""

    num_graphs: int
    x: Dict[str, torch.Tensor]  # [N_t, text_dim]
    pos: Dict[str, torch.Tensor]  # [N_t, K_t, 2] tile units
    batch: Dict[str, torch.Tensor]  # [N_t] graph index
    edges: Dict[Tuple[str, str, str], torch.Tensor]  # [2, E] into the batched node lists
    present: torch.Tensor  # [B, len(RELATIONS)] bool: the graph has that edge type

    @property
    def num_nodes(self) -> int:
        return sum(int(v.shape[0]) for v in self.x.values())

    def to(self, device, dtype: Optional[torch.dtype] = None) -> GraphBatch:
        def conv(d):
            return {k: v.to(device, dtype) for k, v in d.items()}

        batch = {k: v.to(device) for k, v in self.batch.items()}
        edges = {k: v.to(device) for k, v in self.edges.items()}
        return GraphBatch(self.num_graphs, conv(self.x), conv(self.pos), batch, edges, self.present.to(device))


def _nodes(graph, t: str, text_dim: int) -> torch.Tensor:
    width = text_dim + 2 * POS_POINTS[t]
    if graph is None or t not in graph.node_types or "x" not in graph[t]:
        return torch.zeros(0, width)
    x = graph[t].x
    if x.dim() != 2 or x.shape[1] != width:
        raise InputError(f"OSM graph {t} nodes have {x.shape[1] if x.dim() == 2 else x.dim()}-wide features; the model "
                         f"expects {width} ({text_dim} text values + {2 * POS_POINTS[t]} positions).",
                         hint="Build the graphs with the text encoder named in the model card.")
    return x


def collate_graphs(graphs: Sequence, text_dim: int) -> GraphBatch:
    """Batch a list of HeteroData (or None) into a GraphBatch; edge indices are offset per graph."""
    if isinstance(graphs, GraphBatch):
        return graphs
    n = len(graphs)
    feats: Dict[str, List[torch.Tensor]] = {t: [_nodes(g, t, text_dim) for g in graphs] for t in NODE_TYPES}
    counts = {t: torch.tensor([f.shape[0] for f in feats[t]], dtype=torch.long) for t in NODE_TYPES}
    offsets = {t: torch.cumsum(counts[t], 0) - counts[t] for t in NODE_TYPES}
    present = torch.zeros(n, len(RELATIONS), dtype=torch.bool)
    edges = {}
    for r, rel in enumerate(RELATIONS):
        parts = []
        for i, g in enumerate(graphs):
            if g is None or rel not in g.edge_types or "edge_index" not in g[rel]:
                continue
            present[i, r] = True
            ei = g[rel].edge_index
            if ei.numel():
                parts.append(ei + torch.stack([offsets[rel[0]][i], offsets[rel[2]][i]])[:, None])
        edges[rel] = torch.cat(parts, 1) if parts else torch.zeros(2, 0, dtype=torch.long)
    x, pos, batch = {}, {}, {}
    for t in NODE_TYPES:
        allx = torch.cat(feats[t], 0).float() if n else torch.zeros(0, text_dim + 2 * POS_POINTS[t])
        x[t] = allx[:, :text_dim]
        pos[t] = allx[:, text_dim:].reshape(-1, POS_POINTS[t], 2)
        batch[t] = torch.repeat_interleave(torch.arange(n), counts[t])
    return GraphBatch(n, x, pos, batch, edges, present)
