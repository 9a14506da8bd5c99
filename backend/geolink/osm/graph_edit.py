"""Working with graphs of the format (format.py): an empty one, node positions, subgraphs, plain tensors.

The positions are always the last columns of x, so these work for any text width. Unlike the rest of
osm/, this module imports torch.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch

from .format import KINDS, POSITION_WIDTHS


def empty_graph(text_dim: int):
    """A graph with no entities (an image without OSM)."""
    from torch_geometric.data import HeteroData

    g = HeteroData()
    for t in KINDS:
        g[t].x = torch.zeros(0, text_dim + POSITION_WIDTHS[t])
    return g


def node_count(graph) -> int:
    return sum(int(graph[t].x.shape[0]) for t in graph.node_types if "x" in graph[t])


def positions(graph, node_type: str) -> torch.Tensor:
    """[N, K, 2] view of a node type's position points."""
    x = graph[node_type].x
    width = POSITION_WIDTHS[node_type]
    return x[:, x.shape[1] - width:].reshape(x.shape[0], width // 2, 2)


def set_positions(graph, node_type: str, pos: torch.Tensor) -> None:
    x = graph[node_type].x
    width = POSITION_WIDTHS[node_type]
    x[:, x.shape[1] - width:] = pos.reshape(x.shape[0], width)


def to_plain(graph) -> Dict[str, Dict[str, torch.Tensor]]:
    """Nested dicts of tensors: what torch.load(weights_only=True) reads back."""
    nodes = {t: graph[t].x.contiguous() for t in graph.node_types if "x" in graph[t]}
    edges = {}
    for et in graph.edge_types:
        store = graph[et]
        key = "|".join(et)
        edges[key + "|index"] = store.edge_index.contiguous()
        if "edge_attr" in store:
            edges[key + "|attr"] = store.edge_attr.contiguous()
    return {"nodes": nodes, "edges": edges}


def from_plain(plain: Dict[str, Dict[str, torch.Tensor]]):
    from torch_geometric.data import HeteroData

    g = HeteroData()
    for t, x in plain["nodes"].items():
        g[t].x = x
    for key, value in plain["edges"].items():
        src, rel, dst, what = key.split("|")
        g[src, rel, dst]["edge_index" if what == "index" else "edge_attr"] = value
    return g


def subgraph(graph, keep: Dict[str, torch.Tensor]):
    """The graph restricted to the nodes flagged in `keep` (bool per node type), edges remapped."""
    from torch_geometric.data import HeteroData

    out = HeteroData()
    new_index: Dict[str, Optional[torch.Tensor]] = {}
    for t in graph.node_types:
        x = graph[t].x
        mask = keep.get(t, torch.ones(x.shape[0], dtype=torch.bool))
        out[t].x = x[mask].clone()
        new_index[t] = torch.cumsum(mask.long(), 0) - 1
        new_index[t][~mask] = -1
    for et in graph.edge_types:
        src, _, dst = et
        ei = graph[et].edge_index
        if ei.numel():
            a, b = new_index[src][ei[0]], new_index[dst][ei[1]]
            ok = (a >= 0) & (b >= 0)
            out[et].edge_index = torch.stack([a[ok], b[ok]])
        else:
            ok = torch.zeros(0, dtype=torch.bool)
            out[et].edge_index = ei.clone()
        if "edge_attr" in graph[et]:
            out[et].edge_attr = graph[et].edge_attr[ok].clone()
    return out
