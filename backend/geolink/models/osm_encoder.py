"""The OSM entity encoder: one heterogeneous graph-attention layer (torch_geometric), per-graph LayerNorm."""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GATConv, HeteroConv
from torch_geometric.utils import softmax

from .derived import DerivedCache
from .graphs import IN_RELATIONS, NODE_TYPES, OUT_RELATIONS, RELATIONS, GraphBatch


class OSMHeteroGAT(nn.Module):
    """A GATConv per relation, averaged over the relations each node's graph has, then ReLU.

    The weights live in torch_geometric's HeteroConv/GATConv modules (the original's names). The
    forward computes the same function as running each GATConv (one head, no self loops) and
    averaging, but for all nine relations at once: one projection per source type (which also
    yields both attention scores), one softmax and one scatter over every edge of the batch, with
    the edge rows and relation weights the collate step worked out. That keeps the OSM branch to a
    few dozen kernels, which matters on CPUs where each kernel launch synchronises threads.
    """

    def __init__(self, in_channels: int = 512, out_channels: int = 128, layers: int = 1):
        super().__init__()
        self.out_channels = out_channels
        self.convs = nn.ModuleList([
            HeteroConv({rel: GATConv(in_channels if i == 0 else out_channels, out_channels, add_self_loops=False)
                        for rel in RELATIONS}, aggr="mean")
            for i in range(layers)])
        self._derived = DerivedCache()

    def forward(self, g: GraphBatch, x: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Node embeddings [N, out] in the batch's flat order. `x` per type replaces g.x (masked inputs).

        A node whose graph has no relation into its type gets no embedding in the original; its row
        is 0 here and g.reached is False for it.
        """
        h = x
        for hetero in self.convs:
            flat = self._layer(hetero, g, h)
            h = g.split(flat)
        return flat

    def _weights(self, hetero: HeteroConv) -> Tuple[List[torch.Tensor], torch.Tensor]:
        """Per node type, one [3C + 6, D] projection: the messages of its three out-relations, their
        source attention scores and the target scores of its three in-relations; and the nine biases."""
        return self._derived.get(id(hetero), hetero.parameters(), lambda: self._fold(hetero))

    def _fold(self, hetero: HeteroConv) -> Tuple[List[torch.Tensor], torch.Tensor]:
        c = self.out_channels
        convs = [hetero.convs[rel] for rel in RELATIONS]
        fused = []
        for t in NODE_TYPES:
            outs, ins = [convs[r] for r in OUT_RELATIONS[t]], [convs[r] for r in IN_RELATIONS[t]]
            weight = torch.cat([cv.lin.weight for cv in outs])  # [3C, D]
            src = torch.block_diag(*[cv.att_src.view(1, c) for cv in outs]) @ weight
            dst = torch.cat([cv.att_dst.view(1, c) @ cv.lin.weight for cv in ins])
            fused.append(torch.cat([weight, src, dst]))
        return fused, torch.stack([cv.bias for cv in convs])

    def _layer(self, hetero: HeteroConv, g: GraphBatch, x: Dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.out_channels
        weights, bias = self._weights(hetero)
        # [N, 3C + 6]; softmax and aggregation in float32, also under autocast
        y = torch.cat([x[t] @ w.t() for t, w in zip(NODE_TYPES, weights)]).float()
        proj = y[:, :3 * c].reshape(-1, c)  # rows: node * 3 + out-relation
        logits = F.leaky_relu(y[:, 3 * c: 3 * c + 3].reshape(-1)[g.gat_src] + y[:, 3 * c + 3:].reshape(-1)[g.gat_dst],
                              hetero.convs[RELATIONS[0]].negative_slope)
        alpha = softmax(logits, g.gat_dst, num_nodes=y.shape[0] * 3) * g.gat_weight.float()
        messages = proj.index_select(0, g.gat_src) * alpha[:, None]
        agg = torch.zeros(g.num_nodes, c, device=proj.device).index_add_(0, g.gat_target, messages)
        return torch.addmm(agg, g.gat_bias.float(), bias.float()).relu()


def graph_layer_norm(x: torch.Tensor, group: torch.Tensor, num_groups: int, eps: float) -> torch.Tensor:
    """torch_geometric's graph-mode LayerNorm without its affine map (mean and biased std over a
    group's nodes and channels, then x / (std + eps)) applied to each group of rows on its own.

    The original calls it per node type without a batch vector: one group, every node of the type in the batch.
    """
    if not x.shape[0]:
        return x
    x = x.float()  # statistics in float32, also under autocast
    n = torch.bincount(group, minlength=num_groups).clamp(min=1).to(x.dtype) * x.shape[1]
    mean = x.new_zeros(num_groups).index_add_(0, group, x.sum(1)) / n
    centred = x - mean[group, None]
    var = x.new_zeros(num_groups).index_add_(0, group, (centred * centred).sum(1)) / n
    return centred * (var.sqrt() + eps).reciprocal()[group, None]
