"""The OSM entity encoder: one heterogeneous graph-attention layer (torch_geometric), per-graph LayerNorm."""

from __future__ import annotations

from typing import Dict, Tuple

import torch
import torch_geometric
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv

from .graphs import NODE_TYPES, RELATIONS, GraphBatch


class OSMHeteroGAT(nn.Module):
    """A GATConv per relation, averaged over the relations each node's graph has, then ReLU."""

    def __init__(self, in_channels: int = 512, out_channels: int = 128, layers: int = 1):
        super().__init__()
        self.out_channels = out_channels
        self.convs = nn.ModuleList([
            HeteroConv({rel: GATConv(in_channels if i == 0 else out_channels, out_channels, add_self_loops=False)
                        for rel in RELATIONS}, aggr="mean")
            for i in range(layers)])

    def forward(self, g: GraphBatch, x: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor],
                                                                         Dict[str, torch.Tensor]]:
        """(node embeddings [N_t, out], reached [N_t] bool) per type. `x` replaces g.x (masked inputs).

        A node whose graph has no relation into its type gets no embedding in the original; it is
        flagged unreached here (its row is 0) and left out downstream.
        """
        reached = {}
        for hetero in self.convs:
            total = {t: x[t].new_zeros(x[t].shape[0], self.out_channels) for t in NODE_TYPES}
            count = {t: x[t].new_zeros(x[t].shape[0], 1) for t in NODE_TYPES}
            for r, rel in enumerate(RELATIONS):
                src, _, dst = rel
                if not x[dst].shape[0]:
                    continue
                flag = g.present[:, r][g.batch[dst]].to(x[dst].dtype)[:, None]
                conv = hetero.convs[rel]
                if g.edges[rel].shape[1]:
                    out = conv((x[src], x[dst]), g.edges[rel])
                else:  # no edge in the whole batch: the layer's output is its bias
                    out = conv.bias.expand(x[dst].shape[0], -1) if conv.bias is not None else 0.0
                total[dst] = total[dst] + flag * out
                count[dst] = count[dst] + flag
            x = {t: (total[t] / count[t].clamp(min=1)).relu() for t in NODE_TYPES}
            reached = {t: count[t][:, 0] > 0 for t in NODE_TYPES}
        return x, reached


def graph_layer_norm(norm: torch_geometric.nn.LayerNorm, x: torch.Tensor, batch: torch.Tensor,
                     num_graphs: int) -> torch.Tensor:
    """torch_geometric's graph-mode LayerNorm (mean and biased std over a group's nodes and channels,
    x / (std + eps), then the affine map) applied to each group of nodes (`batch`) on its own.

    The original calls it without a batch vector: one group, every node of the type in the batch.
    """
    if not x.shape[0]:
        return x
    n = torch.bincount(batch, minlength=num_graphs).clamp(min=1).to(x.dtype) * x.shape[1]
    mean = x.new_zeros(num_graphs).index_add_(0, batch, x.sum(1)) / n
    centred = x - mean[batch, None]
    var = x.new_zeros(num_graphs).index_add_(0, batch, (centred * centred).sum(1)) / n
    out = centred / (var.sqrt()[batch, None] + norm.eps)
    if norm.weight is not None:
        out = out * norm.weight + norm.bias
    return out
