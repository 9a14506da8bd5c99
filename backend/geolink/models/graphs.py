"""OSM graphs for the model: HeteroData in the graph format (osm/format.py), batched into plain tensors.

The original averages, for each node type, over the relations a batch *has* (HeteroConv skips edge
types absent from the data). To make every image's result independent of its batch neighbours,
relation presence is recorded per graph (`present`) and applied per graph.

Collating also lays every node of every type out in one flat list (point, line, polygon) and works
out, on the CPU, every index the forward pass needs (GAT edge rows, relation weights, which nodes
reach the fusion block and how they are padded per image), so the model runs a few dozen kernels
whatever the batch holds. A collated batch can be packed (GraphBatch.pack) into one buffer per
dtype, page-locked for a GPU, so that it moves there in three copies instead of one per tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from itertools import accumulate
from typing import Callable, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from ..errors import InputError, cmd
from ..osm.format import MAX_POSITION_POINTS, NODE_TYPES, POSITION_POINTS, RELATIONS
from .padding import NodePadding, rank_within

# the relations out of and into each node type, as indices into RELATIONS
OUT_RELATIONS = {t: [r for r, rel in enumerate(RELATIONS) if rel[0] == t] for t in NODE_TYPES}
IN_RELATIONS = {t: [r for r, rel in enumerate(RELATIONS) if rel[2] == t] for t in NODE_TYPES}
_RELATION_INDEX = {rel: r for r, rel in enumerate(RELATIONS)}
_OUT_SLOT = [OUT_RELATIONS[rel[0]].index(r) for r, rel in enumerate(RELATIONS)]
_IN_SLOT = [IN_RELATIONS[rel[2]].index(r) for r, rel in enumerate(RELATIONS)]


@dataclass
class GraphBatch:
    """A batch of OSM graphs: per node type (x, pos, batch), relation presence per graph, and the flat
    layout of all nodes (type-major) with the indices the GAT and the fusion block use."""

    num_graphs: int
    x: Dict[str, torch.Tensor]  # [N_t, text_dim]
    pos: Dict[str, torch.Tensor]  # [N_t, K_t, 2] tile units
    batch: Dict[str, torch.Tensor]  # [N_t] graph index
    present: torch.Tensor  # [B, len(RELATIONS)] bool: the graph has that edge type
    starts: Dict[str, int]  # first flat row of each type
    node_type: torch.Tensor  # [N] index into NODE_TYPES
    node_graph: torch.Tensor  # [N]
    reached: torch.Tensor  # [N] bool: the node's graph has a relation into its type (else no GAT embedding)
    gat_src: torch.Tensor  # [E] each edge's source row in a [N * 3] table (flat node * 3 + out-relation of its type)
    gat_dst: torch.Tensor  # [E] its target row in a [N * 3] table (flat node * 3 + in-relation of its type)
    gat_target: torch.Tensor  # [E] its flat target node
    gat_weight: torch.Tensor  # [E] 1 / number of relations into the target's type in its graph
    gat_bias: torch.Tensor  # [N, len(RELATIONS)] the same weights per node and relation (for the biases)
    fusion_nodes: torch.Tensor  # [M] flat rows of the reached nodes, the ones the fusion block sees
    fusion_pos: torch.Tensor  # [M, 4, 2] their position points, zero-padded
    fusion_pos_weight: torch.Tensor  # [M, 4] 1 / K per real point, 0 on padding
    padding: NodePadding  # how the fusion nodes are padded per image
    buffers: Optional[Dict[torch.dtype, torch.Tensor]] = None  # pack(): every tensor is a view into these

    @property
    def num_nodes(self) -> int:
        return int(self.node_type.shape[0])

    def split(self, flat: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Per-type views of a flat [N, ...] tensor."""
        ends = list(self.starts.values())[1:] + [self.num_nodes]
        return {t: flat[s:e] for (t, s), e in zip(self.starts.items(), ends)}

    def to(self, device, dtype: Optional[torch.dtype] = None) -> GraphBatch:
        """A copy on `device` (floating tensors cast to `dtype`); a packed batch moves in one copy per dtype."""
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, dtype if t.is_floating_point() else None, non_blocking=True)

        if self.buffers is None:
            return self.map(move)
        moved = {d: move(b) for d, b in self.buffers.items()}
        return self.map(lambda t: moved[t.dtype].as_strided(t.shape, t.stride(), t.storage_offset()))

    def pack(self, pin: bool = False) -> GraphBatch:
        """The same batch with each tensor a view into one contiguous buffer per dtype (float, int64, bool),
        page-locked with `pin` (needs CUDA), so that to() a GPU is a few asynchronous copies, not one per tensor."""
        groups: Dict[torch.dtype, List[torch.Tensor]] = {}

        def collect(t: torch.Tensor) -> torch.Tensor:
            groups.setdefault(t.dtype, []).append(t)
            return t

        self.map(collect)
        buffers = {d: torch.cat([t.reshape(-1) for t in ts],
                                out=torch.empty(sum(t.numel() for t in ts), dtype=d, pin_memory=pin))
                   for d, ts in groups.items()}
        at = dict.fromkeys(buffers, 0)

        def view(t: torch.Tensor) -> torch.Tensor:
            start, at[t.dtype] = at[t.dtype], at[t.dtype] + t.numel()
            return buffers[t.dtype][start: at[t.dtype]].view(t.shape)

        return self.map(view, buffers)

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor],
            buffers: Optional[Dict[torch.dtype, torch.Tensor]] = None) -> GraphBatch:
        """A copy with `fn` of each tensor (the padding's too, always in the same order) and `buffers`."""
        values = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = fn(v)
            elif isinstance(v, NodePadding):
                v = v.map(fn)
            elif isinstance(v, dict) and f.name not in ("starts", "buffers"):
                v = {k: fn(t) for k, t in v.items()}
            values[f.name] = v
        return GraphBatch(**{**values, "buffers": buffers})


def _node_features(graph, text_dim: int) -> Dict[str, torch.Tensor]:
    found = {t: store.get("x") for t, store in graph.node_items()} if graph is not None else {}
    out = {}
    for t in NODE_TYPES:
        width = text_dim + 2 * POSITION_POINTS[t]
        x = found.get(t)
        if x is None:
            x = torch.zeros(0, width)
        elif x.dim() != 2 or x.shape[1] != width:
            raise InputError(f"OSM graph {t} nodes have {x.shape[1] if x.dim() == 2 else x.dim()}-wide features; the "
                             f"model expects {width} ({text_dim} text values + {2 * POSITION_POINTS[t]} positions).",
                             hint="Build the graphs with the text encoder named in the model card.")
        out[t] = x.detach().cpu().float()
    return out


def collate_graphs(graphs: Sequence, text_dim: int, max_fusion_nodes: Optional[int] = None) -> GraphBatch:
    """Batch a list of HeteroData (or None) into a GraphBatch, on the CPU (move it with .to()).

    max_fusion_nodes: at most that many nodes of each image enter the fusion block (all of them still
    go through the graph encoder and its normalisation, as in the original, which keeps 50 at random);
    the kept ones are evenly spaced over the image's nodes in their order (points, lines, polygons), so
    the choice is deterministic and each type keeps its share. None: every node.
    """
    if isinstance(graphs, GraphBatch):
        return graphs
    if max_fusion_nodes is not None and max_fusion_nodes < 1:
        raise InputError(f"The number of OSM nodes to fuse per image must be at least 1, got {max_fusion_nodes}.")
    n = len(graphs)
    feats = [_node_features(g, text_dim) for g in graphs]
    counts = {t: [f[t].shape[0] for f in feats] for t in NODE_TYPES}
    totals = {t: sum(counts[t]) for t in NODE_TYPES}
    starts = {t: sum(totals[u] for u in NODE_TYPES[:i]) for i, t in enumerate(NODE_TYPES)}
    first = {t: [starts[t] + c for c in accumulate(counts[t][:-1], initial=0)] for t in NODE_TYPES}  # graph i's 1st row
    rows = {t: torch.cat([f[t] for f in feats]) if n else torch.zeros(0, text_dim + 2 * POSITION_POINTS[t])
            for t in NODE_TYPES}
    x = {t: rows[t][:, :text_dim] for t in NODE_TYPES}
    pos = {t: rows[t][:, text_dim:].reshape(-1, POSITION_POINTS[t], 2) for t in NODE_TYPES}
    # each flat node's (type, graph) block: type * n + graph
    node_block = torch.repeat_interleave(torch.arange(len(NODE_TYPES) * n),
                                         torch.tensor([c for t in NODE_TYPES for c in counts[t]], dtype=torch.long))
    node_graph = node_block % max(n, 1)
    batch = {t: node_graph[starts[t]: starts[t] + totals[t]] for t in NODE_TYPES}
    present = torch.zeros(n, len(RELATIONS), dtype=torch.bool)
    # edge_index blocks and, for each, (first source row, first target row, out- and in-relation slots,
    # source and target node counts, edges); `has`: the (graph, relation) pairs present
    parts, per_part, has = [], [], []
    for i, g in enumerate(graphs):
        for rel, store in (g.edge_items() if g is not None else ()):
            r, ei = _RELATION_INDEX.get(rel), store.get("edge_index")
            if r is None or ei is None:
                continue
            if ei.dim() != 2 or ei.shape[0] != 2:
                raise InputError(f"OSM graph relation {rel} has an edge_index of shape {list(ei.shape)}; "
                                 "expected [2, E].")
            has.append(i * len(RELATIONS) + r)
            if ei.shape[1]:
                s, _, d = rel
                parts.append(ei)
                per_part.append((first[s][i], first[d][i], _OUT_SLOT[r], _IN_SLOT[r], counts[s][i], counts[d][i],
                                 ei.shape[1]))
    present.view(-1)[has] = True
    layout = _flat_layout(n, pos, node_block, node_graph, present, parts, per_part, max_fusion_nodes)
    return GraphBatch(n, x, pos, batch, present, starts, **layout)


def _flat_layout(n: int, pos, node_block: torch.Tensor, node_graph: torch.Tensor, present: torch.Tensor,
                 parts: List[torch.Tensor], per_part: List[tuple], max_fusion_nodes: Optional[int]) -> dict:
    """The flat-layout fields of a GraphBatch. What depends only on a node's type and graph (which
    relations reach it, their mean's weights) is tabulated per (type, graph) block and gathered once."""
    types = len(NODE_TYPES)
    node_type = node_block // max(n, 1)
    # per block: the relations into its type that its graph has, and the mean's weight over them
    into = torch.stack([present[:, IN_RELATIONS[t]] for t in NODE_TYPES]).view(types * n, 3).float()
    block_weight = into / into.sum(1, keepdim=True).clamp(min=1)
    columns = torch.tensor([IN_RELATIONS[t] for t in NODE_TYPES]).repeat_interleave(n, 0)
    block_bias = torch.zeros(types * n, len(RELATIONS)).scatter_(1, columns, block_weight)
    reached = (into.sum(1) > 0)[node_block]
    weight = block_weight[node_block]  # [N, 3]
    fusion_pos = torch.cat([F.pad(pos[t], (0, 0, 0, MAX_POSITION_POINTS - POSITION_POINTS[t])) for t in NODE_TYPES])
    point_weight = torch.tensor([[1.0 / POSITION_POINTS[t]] * POSITION_POINTS[t]
                                 + [0.0] * (MAX_POSITION_POINTS - POSITION_POINTS[t]) for t in NODE_TYPES])
    if parts:
        edges = torch.cat(parts, 1).cpu()
        info = torch.tensor(per_part, dtype=torch.long)
        info = torch.repeat_interleave(info[:, :6], info[:, 6], 0)
        if bool(((edges < 0) | (edges >= info[:, 4:6].t())).any()):
            raise InputError("An OSM graph has an edge to a node it does not have.",
                             hint=f"Rebuild the graphs ({cmd('osm-graph')}) or check the edge_index of each relation.")
        source, target = edges[0] + info[:, 0], edges[1] + info[:, 1]
        gat_src, gat_dst = source * 3 + info[:, 2], target * 3 + info[:, 3]
    else:
        gat_src = gat_dst = target = torch.zeros(0, dtype=torch.long)
    fusion_nodes = torch.nonzero(reached).view(-1)
    if max_fusion_nodes is not None:
        fusion_nodes = _evenly_capped(fusion_nodes, node_graph[fusion_nodes], n, max_fusion_nodes)
    every = fusion_nodes.shape[0] == node_block.shape[0]
    return dict(node_type=node_type, node_graph=node_graph, reached=reached, gat_src=gat_src, gat_dst=gat_dst,
                gat_target=target, gat_weight=weight.view(-1)[gat_dst], gat_bias=block_bias[node_block],
                fusion_nodes=fusion_nodes, fusion_pos=fusion_pos if every else fusion_pos[fusion_nodes],
                fusion_pos_weight=point_weight[node_type if every else node_type[fusion_nodes]],
                padding=NodePadding(node_graph if every else node_graph[fusion_nodes], n))


def _evenly_capped(nodes: torch.Tensor, graph: torch.Tensor, num_graphs: int, k: int) -> torch.Tensor:
    """`nodes` (flat rows, image `graph`) with each image cut to k: its nodes of rank floor(j * n / k), j < k."""
    counts = torch.bincount(graph, minlength=num_graphs)
    if not nodes.shape[0] or int(counts.max()) <= k:
        return nodes
    rank, n = rank_within(graph, counts), counts[graph]
    j = (rank * k + n - 1) // n  # the first pick at or after this rank
    return nodes[(n <= k) | ((j < k) & (j * n // k == rank))]
